"""The Lua scripts behind every Redis state transition of a job.

Each transition is one script, so it is atomic and costs one round trip: a job is
always either in a queue list or in the lease set, never only in flight on a socket,
and a result is written once per (run_id, step_id). Keys follow RQ's layout
(`rq:queue:<name>`, `rq:job:<id>`, `rq:queues`) so that `rq info` sees our queues, jobs
and workers; taskloom's own keys live under `taskloom:`.

The scripts keep RQ's registries in step with the lease set, as RQ 2 and 3 read them
(sorted sets scored by the time an entry expires, in seconds):
- `rq:wip:<queue>` (StartedJobRegistry): `<job_id>:<execution>` while a job is leased;
  scored by the job's TTL, not the lease, so that RQ's cleanup (run by `rq info`) never
  takes a job as abandoned before taskloom's own reaper re-queues it;
- `rq:finished:<queue>` (FinishedJobRegistry): a job that finished, as long as its hash;
- `rq:failed:<queue>` (FailedJobRegistry): a step's job that failed for good (an attempt
  that taskloom retries is not listed). `FailedJobRegistry.requeue()` runs it again.

Scripts reach a few keys they read from the job hash (its queue, result and notify
keys), so they assume a single Redis node, not Redis Cluster.
"""

from __future__ import annotations

from taskloom.config import key

# Dead-lettering is shared by the reaper, rejection and cancellation: mark the job
# failed, list it in RQ's failed registry and ours, and write the step's final
# (failed) result once, waking whoever waits for it.
_PRELUDE = """
local P = '%(prefix)s'
local function final_result(job, f, status, etype, message, ttl)
  -- f: {result_key, notify_key, run_id, step_id, deliveries}
  if not f[1] or not f[2] then return end
  local r = cjson.encode({run_id = f[3] or '', step_id = f[4] or '', status = status,
    error = {type = etype, message = message}, attempts = tonumber(f[5] or '0'),
    finished_at = tonumber(redis.call('TIME')[1])})
  if not redis.call('SET', f[1], r, 'NX', 'EX', ttl) then
    r = redis.call('GET', f[1]) or r
  end
  redis.call('RPUSH', f[2], '{"job_id":"' .. job .. '","final":true,"result":' .. r .. '}')
  redis.call('EXPIRE', f[2], ttl)
end
-- Whether a job is in its queue. The scan is bounded (LPOS is linear): in a queue
-- longer than that, a job marked queued is taken to be there.
local function in_queue(qk, id)
  return redis.call('LPOS', qk, id, 'MAXLEN', 1000) or redis.call('LLEN', qk) > 1000
end
local function is_done(r)
  local ok, v = pcall(cjson.decode, r)
  return ok and type(v) == 'table' and v['status'] == 'done'
end
-- A job leaves RQ's StartedJobRegistry (its execution entry, written by `claim`).
local function unstart(job, origin)
  local e = redis.call('HGET', job, 'execution')
  if e and origin then redis.call('ZREM', 'rq:wip:' .. origin, e) end
end
local function dead_letter(id, etype, message, now, ttl, now_str)
  local job = 'rq:job:' .. id
  local f = redis.call('HMGET', job, 'result_key', 'notify_key', 'run_id', 'step_id',
                       'deliveries', 'origin')
  unstart(job, f[6])
  redis.call('HSET', job, 'status', 'failed', 'exc_info', etype .. ': ' .. message,
             'ended_at', now_str)
  redis.call('EXPIRE', job, ttl)
  redis.call('ZADD', P .. 'dead', now, id)
  redis.call('ZADD', 'rq:failed:' .. (f[6] or 'unknown'), now + ttl, id)
  if f[3] and f[4] then
    local k = P .. 'dead:' .. f[3]
    redis.call('HSET', k, f[4], cjson.encode({job_id = id, type = etype, message = message}))
    redis.call('EXPIRE', k, ttl)
  end
  final_result(id, f, 'failed', etype, message, ttl)
end
"""

# Hot-path scripts take no KEYS: they build key names from ids, which keeps the
# command short (it is packed and parsed on every step).
# ARGV: job_id, data, now_str, queue, run_id, step_id, ttl, description
ENQUEUE = """
local id, q, run, step, ttl = ARGV[1], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local rk, nk = P .. 'result:' .. run .. ':' .. step, P .. 'notify:' .. run .. ':' .. step
local ck, job, qk = P .. 'cancel:' .. run, 'rq:job:' .. id, 'rq:queue:' .. q
local r = redis.call('GET', rk)
if r then
  if is_done(r) then
    -- wake the caller's pipelined BLPOP at once
    redis.call('RPUSH', nk, '{"job_id":"' .. id .. '","final":true,"result":' .. r .. '}')
    redis.call('EXPIRE', nk, ttl)
    return {'done', r}
  end
  redis.call('DEL', rk, nk)  -- a failed or cancelled step runs again
end
if redis.call('EXISTS', ck) == 1 then
  redis.call('RPUSH', nk, '{"job_id":"' .. id .. '","final":true,"cancelled":true}')
  redis.call('EXPIRE', nk, ttl)
  return {'cancelled', ''}
end
-- The step already has a job in flight (queued or leased): the caller waits on that one.
local prev = redis.call('HGET', P .. 'jobs:' .. run, step)
if prev then
  local pj = 'rq:job:' .. prev
  local status, origin = unpack(redis.call('HMGET', pj, 'status', 'origin'))
  if (status == 'queued' and origin and in_queue('rq:queue:' .. origin, prev))
      or (status == 'started' and redis.call('ZSCORE', P .. 'leases', prev)) then
    return {'running', prev}
  end
end
redis.call('HSET', job, 'data', ARGV[2], 'created_at', ARGV[3], 'enqueued_at', ARGV[3],
  'origin', q, 'status', 'queued', 'description', ARGV[8], 'result_ttl', ttl,
  'run_id', run, 'step_id', step, 'deliveries', '0', 'result_key', rk,
  'notify_key', nk, 'cancel_key', ck)
redis.call('EXPIRE', job, ttl)
redis.call('RPUSH', qk, id)
redis.call('RPUSH', P .. 'wake:' .. q, '1')
redis.call('SADD', 'rq:queues', qk)
redis.call('HSET', P .. 'jobs:' .. run, step, id)
redis.call('EXPIRE', P .. 'jobs:' .. run, ttl)
return {'queued', ''}
"""

# ARGV: worker, lease_ms, now_str, ttl, queue names in priority order...
# The lease runs from the moment of the claim, by the server's clock (TIME), not from
# when the worker sent the command: a claim pipelined behind a BLPOP may run up to a
# whole wait later. Wake tokens let idle workers block (BLPOP) while the pop of the job itself stays
# atomic with its lease. Whichever token a worker consumed, the script then sets each
# of its wake lists to the length of its queue, so tokens never drift from jobs.
CLAIM = """
local leases = P .. 'leases'
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local function sync()
  for i = 5, #ARGV do
    local q, w = 'rq:queue:' .. ARGV[i], P .. 'wake:' .. ARGV[i]
    local want, have = redis.call('LLEN', q), redis.call('LLEN', w)
    if have > want then
      if want == 0 then redis.call('DEL', w) else redis.call('LTRIM', w, 0, want - 1) end
    elseif want > have then
      for _ = 1, math.min(want - have, 100) do redis.call('RPUSH', w, '1') end
    end
  end
end
for i = 5, #ARGV do
  while true do
    local id = redis.call('LPOP', 'rq:queue:' .. ARGV[i])
    if not id then break end
    local job = 'rq:job:' .. id
    local f = redis.call('HMGET', job, 'data', 'origin', 'run_id', 'step_id', 'deliveries',
                         'result_key', 'notify_key', 'cancel_key', 'status', 'lost_by')
    if f[1] and redis.call('ZSCORE', leases, id) then
      -- the same job delivered again while it runs: leave it to its current worker
    elseif f[1] then
      sync()
      local r = f[6] and redis.call('GET', f[6])
      if r and f[9] == 'queued' and not is_done(r) then
        -- The step failed for good, and something put its job back on the queue as RQ
        -- does (FailedJobRegistry.requeue): run it again, from a clean slate. (A copy
        -- our reaper queued again while a slow worker finished it is no longer
        -- `queued`: the finish set its status.)
        redis.call('DEL', f[6])
        redis.call('ZREM', P .. 'dead', id)
        if f[3] and f[4] then redis.call('HDEL', P .. 'dead:' .. f[3], f[4]) end
        redis.call('HSET', job, 'deliveries', '0', 'lost_by', '')
        f[5], f[10], r = '0', '', nil
      end
      if r then  -- a duplicate delivery: answer with the merged result, don't run it
        redis.call('HSET', job, 'status', 'finished', 'ended_at', ARGV[3])
        redis.call('ZADD', 'rq:finished:' .. f[2], now_s + ARGV[4], id)
        redis.call('RPUSH', f[7], '{"job_id":"' .. id .. '","final":true,"result":' .. r .. '}')
        redis.call('EXPIRE', f[7], ARGV[4])
        return {id, '', f[2], f[3] or '', f[4] or '', f[5] or '0', 'duplicate', ''}
      end
      local state = 'run'
      if f[8] and redis.call('EXISTS', f[8]) == 1 then state = 'cancelled' end
      local e = id .. ':' .. t[1] .. t[2]  -- RQ's <job_id>:<execution_id>
      redis.call('HSET', job, 'status', 'started', 'worker_name', ARGV[1],
                 'started_at', ARGV[3], 'last_heartbeat', ARGV[3], 'ended_at', '',
                 'execution', e)
      redis.call('ZADD', leases, t[1] * 1000 + math.floor(t[2] / 1000) + ARGV[2], id)
      redis.call('ZADD', 'rq:wip:' .. f[2], now_s + ARGV[4], e)
      return {id, f[1], f[2], f[3] or '', f[4] or '', f[5] or '0', state, f[10] or ''}
    end
  end
end
sync()
return false
"""

# ARGV: job_id, final (1/0), result json, ttl, run_id, step_id, job status, now_str, now,
#       dead-letter json ('' if none), queue, ttl of a finished job and of notices
# The step's result is kept for `ttl` (resume needs it); a finished job's hash (its
# payload) and its notices only until the waiter has surely read them.
FINISH = """
local id, ttl, run, step = ARGV[1], ARGV[4], ARGV[5], ARGV[6]
local rk, nk = P .. 'result:' .. run .. ':' .. step, P .. 'notify:' .. run .. ':' .. step
redis.call('ZREM', P .. 'leases', id)
unstart('rq:job:' .. id, ARGV[11])
redis.call('HSET', 'rq:job:' .. id, 'status', ARGV[7], 'ended_at', ARGV[8])
if ARGV[7] == 'finished' then
  redis.call('EXPIRE', 'rq:job:' .. id, ARGV[12])
  redis.call('ZADD', 'rq:finished:' .. ARGV[11], ARGV[9] + ARGV[12], id)
end
-- an attempt that is not final: its outcome stays with the job, for a waiter whose
-- notice went to another waiter of the same step (see PROBE)
if ARGV[2] ~= '1' then redis.call('HSET', 'rq:job:' .. id, 'outcome', ARGV[3]) end
local value, won = ARGV[3], 0
if ARGV[2] == '1' then
  if redis.call('SET', rk, ARGV[3], 'NX', 'EX', ttl) then
    won = 1
    redis.call('HINCRBY', P .. 'merges:' .. run, step, 1)
    redis.call('EXPIRE', P .. 'merges:' .. run, ttl)
    if ARGV[10] ~= '' then
      redis.call('ZADD', P .. 'dead', ARGV[9], id)
      redis.call('HSET', P .. 'dead:' .. run, step, ARGV[10])
      redis.call('EXPIRE', P .. 'dead:' .. run, ttl)
      redis.call('ZADD', 'rq:failed:' .. ARGV[11], ARGV[9] + ttl, id)
    end
  else
    value = redis.call('GET', rk) or value
  end
end
local final = 'false'
if ARGV[2] == '1' then final = 'true' end
redis.call('RPUSH', nk,
  '{"job_id":"' .. id .. '","final":' .. final .. ',"result":' .. value .. '}')
redis.call('EXPIRE', nk, ARGV[12])
return won
"""

# KEYS: leases, worker
# ARGV: (unused), lease_ms, worker ttl, now_str, max deliveries, ttl, now, job ids...
# Leases are measured on the server's clock, as `claim` sets them.
HEARTBEAT = """
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
for i = 8, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now_ms + ARGV[2], ARGV[i]) end
local alive = redis.call('EXISTS', KEYS[2])
if alive == 1 then
  redis.call('HSET', KEYS[2], 'last_heartbeat', ARGV[4])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
local requeued, dead = 0, 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms, 'LIMIT', 0, 500)) do
  redis.call('ZREM', KEYS[1], id)
  local job = 'rq:job:' .. id
  local f = redis.call('HMGET', job, 'status', 'origin', 'worker_name', 'lost_by')
  if f[1] == 'started' and f[2] then
    local d = redis.call('HINCRBY', job, 'deliveries', 1)
    -- which workers lost it, and when: the record's answer to "why was it retried?"
    local lost = (f[4] and f[4] ~= '' and f[4] .. ', ' or '') .. (f[3] or '?') .. ' at ' .. ARGV[4]
    redis.call('HSET', job, 'lost_by', lost)
    if d >= tonumber(ARGV[5]) then
      dead_letter(id, 'WorkerLostError', 'its worker stopped answering ' .. d ..
        ' times (killed or out of memory?): ' .. lost,
        tonumber(ARGV[7]), tonumber(ARGV[6]), ARGV[4])
      dead = dead + 1
    else
      unstart(job, f[2])
      redis.call('HSET', job, 'status', 'queued', 'worker_name', '')
      redis.call('LPUSH', 'rq:queue:' .. f[2], id)
      redis.call('LPUSH', P .. 'wake:' .. f[2], '1')
      requeued = requeued + 1
    end
  end
end
return {alive, requeued, dead}
"""

# ARGV: job_id, run_id, step_id
# Where a job the coordinator waits on is now, for when its notice is slow to come:
# - result: the step's final result (whoever wrote it);
# - outcome: a taskloom worker settled this attempt without a final result (a failure
#   worth retrying); its result, in case the notice went to another waiter;
# - leased, or queued (with '1' if a live worker serves its queue, else '0');
# - gone: taken by something that is not a taskloom worker, or lost; with what its hash
#   says about it, and the error RQ recorded (a traceback, maybe compressed), if any.
PROBE = """
local id = ARGV[1]
local r = redis.call('GET', P .. 'result:' .. ARGV[2] .. ':' .. ARGV[3])
if r then return {'result', r} end
if redis.call('ZSCORE', P .. 'leases', id) then return {'leased', ''} end
local job = 'rq:job:' .. id
local f = redis.call('HMGET', job, 'status', 'origin', 'exc_info', 'worker_name', 'outcome')
if f[1] == 'queued' and f[2] and in_queue('rq:queue:' .. f[2], id) then
  local served = '0'
  for _, w in ipairs(redis.call('SMEMBERS', 'rq:workers:' .. f[2])) do
    if redis.call('EXISTS', w) == 1 and redis.call('HEXISTS', w, 'death') == 0 then
      served = '1'
      break
    end
  end
  return {'queued', served}
end
if f[5] and f[1] ~= 'queued' and f[1] ~= 'started' then return {'outcome', f[5]} end
if not f[1] then return {'gone', 'its job hash is gone'} end
local why = 'its job is ' .. f[1]
if f[4] and f[4] ~= '' then
  why = why .. ' on worker ' .. f[4]
  local w = 'rq:worker:' .. f[4]
  if redis.call('EXISTS', w) == 1 and redis.call('HEXISTS', w, 'taskloom') == 0 then
    why = why .. ', which is no taskloom worker'
  end
end
local exc = f[3]
if not exc or exc == '' then  -- RQ 2+ keeps a failure in the job's results stream
  local last = redis.call('XREVRANGE', 'rq:results:' .. id, '+', '-', 'COUNT', 1)[1]
  if last then
    for i = 1, #last[2], 2 do
      if last[2][i] == 'exc_string' then exc = last[2][i + 1] end
    end
  end
end
return {'gone', why, exc or ''}
"""

# KEYS: job, leases. ARGV: job_id, etype, message, now, ttl, now_str
REJECT = """
redis.call('ZREM', KEYS[2], ARGV[1])
dead_letter(ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6])
return 1
"""

# KEYS: job, leases. ARGV: job_id
REQUEUE = """
redis.call('ZREM', KEYS[2], ARGV[1])
local origin = redis.call('HGET', KEYS[1], 'origin')
if not origin then return 0 end
unstart(KEYS[1], origin)
redis.call('HSET', KEYS[1], 'status', 'queued', 'worker_name', '')
redis.call('LPUSH', 'rq:queue:' .. origin, ARGV[1])
redis.call('LPUSH', P .. 'wake:' .. origin, '1')
return 1
"""

# KEYS: cancel, run jobs. ARGV: ttl, the coordinator's step id
CANCEL = """
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
local queued, running = 0, 0
local entries = redis.call('HGETALL', KEYS[2])
for i = 1, #entries, 2 do
  local id = entries[i + 1]
  local job = 'rq:job:' .. id
  local f = redis.call('HMGET', job, 'result_key', 'notify_key', 'run_id', 'step_id',
                       'deliveries', 'origin', 'status')
  if f[7] == 'queued' then
    redis.call('LREM', 'rq:queue:' .. f[6], 0, id)
    redis.call('HSET', job, 'status', 'canceled')
    final_result(id, f, 'cancelled', 'RunCancelledError', 'the run was cancelled',
                 tonumber(ARGV[1]))
    queued = queued + 1
  elseif f[7] == 'started' and entries[i] ~= ARGV[2] then  -- steps, not the coordinator
    running = running + 1
  end
end
return {queued, running}
"""


def script(body: str) -> str:
    """A script with the shared prelude, under taskloom's key prefix."""
    return _PRELUDE % {"prefix": key("")} + body


ALL = {
    "enqueue": ENQUEUE,
    "claim": CLAIM,
    "finish": FINISH,
    "heartbeat": HEARTBEAT,
    "reject": REJECT,
    "requeue": REQUEUE,
    "cancel": CANCEL,
    "probe": PROBE,
}
