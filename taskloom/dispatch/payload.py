"""Job payloads on the wire: JSON envelopes, HMAC signatures and queue names.

An RQ job's `data` is normally a pickle of `(func, instance, args, kwargs)`. Ours is
the JSON list `["taskloom.workers.worker.run_job", null, [ENVELOPE], {}]`: the
function is always the same one, and the envelope names a registered payload kind
(`step` or `run`), never an import path. A worker refuses anything else.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from taskloom import tracing
from taskloom.config import DEFAULT_QUEUE, QUEUE_NAME
from taskloom.errors import ConfigError, JobRejectedError
from taskloom.step import StepJob, StepResult, StepStatus

JOB_FUNC = "taskloom.workers.worker.run_job"
PayloadKind = Literal["step", "run"]


class Envelope(BaseModel):
    """What a worker receives: a registered kind, its body, and a signature."""

    v: int = Field(1, description="envelope version")
    kind: PayloadKind = Field(description="the registered payload kind")
    body: dict[str, Any] = Field(description="a StepJob for 'step'; a submitted run for 'run'")
    max_attempts: int = Field(1, description="attempts before a failure is final")
    trace: dict[str, str] | None = Field(
        None, description="the sender's W3C trace context (traceparent), when tracing is on"
    )
    sig: str | None = Field(None, description="hex HMAC-SHA256 of every other field")


def check_queue(name: str) -> str:
    """Return a valid queue name.

    Raises:
        ConfigError: the name has characters Redis keys and RQ tools don't expect.
    """
    if not QUEUE_NAME.match(name):
        raise ConfigError(
            f"queue name {name!r} is not allowed; use letters, digits and _ . : - "
            "(at most 128, not starting with a punctuation mark)"
        )
    return name


def model_tag(model: str) -> str:
    """The short name a model is routed by: a GGUF path's stem, or the name as given."""
    return Path(model).stem if model.endswith(".gguf") or "/" in model else model


def queue_name(queue: str | None, model: str | None) -> str:
    """The queue a step goes to: its own, `slm:<model>` when it names a model, else `slm`.

    Raises:
        ConfigError: the resulting queue name is not allowed.
    """
    if queue:
        return check_queue(queue)
    if model:
        return check_queue(f"{DEFAULT_QUEUE}:{model_tag(model)}")
    return DEFAULT_QUEUE


def queue_for(job: StepJob) -> str:
    """The queue a StepJob goes to (see `queue_name`)."""
    return queue_name(job.queue, job.model)


def _mac(secret: str, data: dict[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hmac.new(secret.encode(), canonical, hashlib.sha256).hexdigest()


def sign(envelope: dict[str, Any], secret: str) -> str:
    """The hex HMAC-SHA256 of a whole envelope (every field but `sig`)."""
    return _mac(secret, {k: v for k, v in envelope.items() if k != "sig"})


def encode(
    kind: PayloadKind, body: dict[str, Any], *, max_attempts: int, secret: str | None
) -> str:
    """The RQ job `data` for a payload (JSON, signed when a secret is set)."""
    envelope: dict[str, Any] = {"v": 1, "kind": kind, "body": body, "max_attempts": max_attempts}
    if trace := tracing.carrier():  # signed with the rest: a forged parent is refused too
        envelope["trace"] = trace
    if secret:
        envelope["sig"] = sign(envelope, secret)
    return json.dumps([JOB_FUNC, None, [envelope], {}], separators=(",", ":"))


def sign_result(result: StepResult, secret: str | None) -> StepResult:
    """The result as a worker writes it: signed when a secret is set."""
    if not secret:
        return result
    return result.model_copy(update={"sig": _mac(secret, _result_fields(result))})


def is_verified(result: StepResult, secret: str | None) -> bool:
    """Whether a result may be merged: any result without a secret; with one, a `done`
    result must carry a valid worker signature. (Failures are written by the scripts
    too, e.g. a dead letter, and carry no value to forge.)"""
    if not secret or result.status != StepStatus.DONE:
        return True
    expected = _mac(secret, _result_fields(result))
    return result.sig is not None and hmac.compare_digest(expected, result.sig)


def _result_fields(result: StepResult) -> dict[str, Any]:
    return result.model_dump(mode="json", exclude={"sig"})


def decode(data: bytes, *, secret: str | None) -> Envelope:
    """Check and open an RQ job's `data`.

    With a secret, the signature must verify; without one, signatures are not checked.

    Raises:
        JobRejectedError: not our JSON format, another function, or a bad signature.
    """
    if data[:1] != b"[":
        try:  # RQ's own enqueue compresses the data
            data = zlib.decompress(data)
        except zlib.error as e:
            raise JobRejectedError("job data is not JSON (a pickle or corrupt?)") from e
    try:
        func, instance, args, kwargs = json.loads(data)
    except (ValueError, TypeError) as e:
        raise JobRejectedError("job data is not a JSON [func, instance, args, kwargs]") from e
    except RecursionError as e:  # would otherwise kill each worker that claims the job
        raise JobRejectedError("job data is nested too deeply") from e
    if func != JOB_FUNC or instance is not None or kwargs or not isinstance(args, list):
        raise JobRejectedError(f"job calls {func!r}; workers only run {JOB_FUNC}")
    if len(args) != 1:
        raise JobRejectedError(f"{JOB_FUNC} takes one envelope, got {len(args)} arguments")
    try:
        envelope = Envelope.model_validate(args[0])
    except ValidationError as e:
        raise JobRejectedError(f"job envelope is malformed: {e.errors()[0]['msg']}") from e
    if secret:
        if envelope.sig is None:
            raise JobRejectedError("job is not signed and this worker has TASKLOOM_SECRET set")
        expected = sign(args[0], secret)  # as sent: every field it carries is covered
        if not hmac.compare_digest(expected, envelope.sig):
            raise JobRejectedError(
                "job signature does not verify; give workers and submitters the same "
                "TASKLOOM_SECRET"
            )
    return envelope


def step_job(envelope: Envelope) -> StepJob:
    """The StepJob inside a `step` envelope.

    Raises:
        JobRejectedError: the body is not a valid StepJob.
    """
    try:
        return StepJob.model_validate(envelope.body)
    except ValidationError as e:
        raise JobRejectedError(f"step payload is malformed: {e.errors()[0]['msg']}") from e
