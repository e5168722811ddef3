"""The worker process: one per GPU (or CPU box), a resident model or run coordinators.

- `worker`: the loop that claims, leases, heartbeats and settles jobs.
- `handlers`: what a worker does with a `step` payload (one attempt on its model).
- `coordinator`: what a `runs` worker does with a `run` payload (drive a submitted run).
- `serve`: `build_worker`, which `taskloom worker` calls.

The queue protocol both ends speak (broker, Lua scripts, payloads) is in
`taskloom.dispatch`, beside the dispatcher that enqueues.
"""
