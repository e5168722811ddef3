"""Runs submitted to Redis: submit, the coordinator a `runs` worker executes, status, cancel.

A submitted run is a `run` job on the `runs` queue. A worker started with
`--queue runs` loads no model; it drives the run's workflow with a RedisDispatcher, so
its steps go to the SLM workers, and keeps the run record in Redis. If that worker
dies, the job's lease runs out and another worker drives the run again: steps that
already have a result are not queued again.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from taskloom.config import DEFAULT_QUEUE, QUEUE_NAME, RUNS_QUEUE, Settings
from taskloom.errors import (
    ConfigError,
    InfrastructureError,
    JobRejectedError,
    TaskloomError,
    describe,
)
from taskloom.plan import load_plan
from taskloom.tools import Tool, ToolRegistry
from taskloom.workers import payload
from taskloom.workers.broker import RUN_STEP, Broker, Claim
from taskloom.workers.handlers import Handler, load_model, step_handler
from taskloom.workers.job import StepResult, StepStatus
from taskloom.workers.redis_dispatch import RedisDispatcher
from taskloom.workers.worker import Worker, worker_name
from taskloom.workflows.definition import Workflow
from taskloom.workflows.record import RunRecord, RunStatus
from taskloom.workflows.redis_store import RedisRunStore
from taskloom.workflows.runner import OnEvent, new_run_id, run
from taskloom.workflows.target import load_module, load_workflow

log = structlog.get_logger(__name__)


def collect(specs: list[str]) -> tuple[ToolRegistry, dict[str, Workflow]]:
    """The tools and workflows defined in modules or files (`--tools` on a worker).

    A workflow's own tools are collected too, so a worker can run its tool steps.
    """
    tools = ToolRegistry()
    workflows: dict[str, Workflow] = {}
    for spec in specs:
        module = load_module(spec)
        for name, value in vars(module).items():
            if isinstance(value, Workflow):
                workflows[value.name] = workflows[name] = value
                for t in value.tools:
                    tools.add(t)
            elif isinstance(value, ToolRegistry):
                for t in value:
                    tools.add(t)
            elif isinstance(value, Tool):
                tools.add(value)
    return tools, workflows


def step_queues(workflow: Workflow) -> set[str]:
    """The queues a workflow's steps go to (a Python workflow's are known only at run time)."""
    if workflow.plan is None:
        return {payload.queue_name(None, None)}
    return {payload.queue_name(s.queue, s.model) for s in workflow.plan.steps}


def submit(
    workflow: Workflow,
    inputs: dict[str, Any],
    *,
    broker: Broker,
    settings: Settings,
    target: str,
    run_id: str | None = None,
) -> str:
    """Queue a run for a `runs` worker; returns its run id.

    Raises:
        InputError: the inputs don't fit the workflow.
        RedisUnavailableError: Redis can't be reached.
    """
    workflow.check_inputs(inputs)
    for q in step_queues(workflow):
        payload.check_queue(q)
    run_id = run_id or new_run_id()
    plan = workflow.plan.model_dump(mode="json", exclude_none=True) if workflow.plan else None
    record = RunRecord(run_id=run_id, target=target, plan=plan, inputs=inputs)
    RedisRunStore(broker).save(record)
    body = {
        "run_id": run_id,
        "target": target,
        "plan": plan,
        "inputs": inputs,
        "workflow": None if plan else workflow.name,
    }
    data = payload.encode("run", body, max_attempts=1, secret=settings.secret)
    broker.enqueue(
        queue=RUNS_QUEUE,
        data=data,
        run_id=run_id,
        step_id=RUN_STEP,
        description=f"run {run_id} of {target}",
    )
    log.info("run_submitted", run_id=run_id, target=target)
    return run_id


def coordinator(
    broker: Broker,
    *,
    settings: Settings,
    tools: ToolRegistry,
    workflows: dict[str, Workflow],
    worker: str,
) -> Handler:
    """The handler for `run` payloads: drive the run to its end, steps over Redis."""

    def handle(envelope: payload.Envelope, claim: Claim) -> StepResult:
        body = envelope.body
        run_id = str(body.get("run_id") or claim.run_id)
        started = time.time()
        store = RedisRunStore(broker)
        try:
            workflow = _workflow(body, tools=tools, workflows=workflows)
            dispatcher = RedisDispatcher(broker, settings=settings)

            def save(event: dict[str, Any], record: RunRecord) -> None:
                if event.get("event") == "step_finished":
                    store.save(record)

            record = run(
                workflow,
                dict(body.get("inputs") or {}),
                dispatcher=dispatcher,
                settings=settings,
                store=store,
                run_id=run_id,
                target=str(body.get("target", "")),
                on_event=save,
            )
        except InfrastructureError:
            raise  # not the run's fault: the lease re-queues it once Redis is back
        except TaskloomError as e:
            record = RunRecord(run_id=run_id, target=str(body.get("target", "")))
            record.status, record.error = RunStatus.FAILED, describe(e)
            record.finished_at = time.time()
            store.save(record)
        status = {RunStatus.DONE: StepStatus.DONE, RunStatus.CANCELLED: StepStatus.CANCELLED}
        return StepResult(
            run_id=run_id,
            step_id=RUN_STEP,
            status=status.get(record.status, StepStatus.FAILED),
            value={"status": record.status.value},
            error=record.error,
            worker=worker,
            started_at=started,
            finished_at=time.time(),
            run_ms=(time.time() - started) * 1000,
        )

    return handle


def _workflow(
    body: dict[str, Any], *, tools: ToolRegistry, workflows: dict[str, Workflow]
) -> Workflow:
    if body.get("plan"):
        return Workflow.from_plan(load_plan(body["plan"], max_steps=10**6), tools=tools)
    name = str(body.get("workflow") or "")
    if name not in workflows:
        raise JobRejectedError(
            f"workflow {name!r} is not registered on this worker; start the runs worker "
            "with --tools MODULE naming the module that defines it"
        )
    return workflows[name]


def cancel(broker: Broker, run_id: str) -> tuple[int, int]:
    """Cancel a run: queued steps are dropped, running ones are told to stop.

    Returns:
        (queued jobs cancelled, jobs still running).
    """
    store = RedisRunStore(broker)
    record = store.load(run_id)
    queued, running = broker.cancel(run_id)
    if record.status == RunStatus.PENDING:  # its coordinator never started
        record.status, record.finished_at = RunStatus.CANCELLED, time.time()
        record.error = {"type": "RunCancelledError", "message": "the run was cancelled"}
        store.save(record)
    log.info("run_cancel_requested", run_id=run_id, queued=queued, running=running)
    return queued, running


def build_worker(
    broker: Broker,
    *,
    settings: Settings,
    queues: list[str],
    tool_specs: list[str],
    name: str | None = None,
    concurrency: int | None = None,
    is_burst: bool = False,
    parent_pid: int | None = None,
) -> Worker:
    """A worker for `taskloom worker`: a resident model for SLM queues, or coordinators.

    With no queues it serves `slm` and `slm:<model>`. The model loads here, once,
    before the worker takes any job.

    Raises:
        ConfigError: a bad queue name, or `runs` mixed with SLM queues.
        ModelFileError: the model can't be loaded.
    """
    names = [payload.check_queue(q) for q in queues]
    is_runs = RUNS_QUEUE in names
    if is_runs and len(set(names)) > 1:
        raise ConfigError(
            "--queue runs can't be mixed with SLM queues: a coordinator would block the "
            "model; start a separate worker for each"
        )
    tools, workflows = collect(tool_specs)
    name = name or worker_name()
    handlers: dict[str, Handler] = {}
    info: dict[str, Any] = {"model": "-", "gpu": "-" if settings.gpu is None else settings.gpu}
    if is_runs:
        handlers["run"] = coordinator(
            broker, settings=settings, tools=tools, workflows=workflows, worker=name
        )
    else:
        chat = load_model(settings)
        handlers["step"] = step_handler(model=chat, tools=tools, settings=settings, worker=name)
        info["model"] = chat.name
        if not names:
            names = [DEFAULT_QUEUE]
            by_model = f"{DEFAULT_QUEUE}:{payload.model_tag(chat.name)}"
            if QUEUE_NAME.match(by_model):
                names.append(by_model)
    return Worker(
        broker,
        queues=names,
        handlers=handlers,
        settings=settings,
        name=name,
        info=info,
        concurrency=concurrency or (8 if is_runs else 1),
        is_burst=is_burst,
        parent_pid=parent_pid,
    )


def resume_submitted(
    broker: Broker,
    run_id: str,
    *,
    settings: Settings,
    tool_specs: list[str],
    on_event: OnEvent | None = None,
) -> RunRecord | None:
    """Drive a submitted run again, in this process; None if Redis has no such run.

    Steps that already have a `done` result are not queued again.
    """
    store = RedisRunStore(broker)
    if not store.exists(run_id):
        return None
    record = store.load(run_id)
    tools, workflows = collect(tool_specs)
    body = {"plan": record.plan, "workflow": record.target.rpartition(":")[2]}
    if record.plan is None and body["workflow"] not in workflows:
        workflows[str(body["workflow"])] = load_workflow(record.target)
    workflow = _workflow(body, tools=tools, workflows=workflows)
    broker.uncancel(run_id)
    return run(
        workflow,
        record.inputs,
        dispatcher=RedisDispatcher(broker, settings=settings),
        settings=settings,
        store=store,
        run_id=run_id,
        target=record.target,
        on_event=on_event,
    )
