"""Every error taskloom raises, in one tree.

```
TaskloomError                      base; carries run_id / step_id when known
├── UserError                      the developer's or user's mistake: exit code 2
│   ├── PlanValidationError        a plan breaks the wire format; .problems lists each
│   ├── InputError                 --input or run inputs that are not usable
│   ├── TargetError                a run target (plan file, workflow) that can't be loaded
│   ├── ModelFileError             a GGUF model path that is missing or corrupt
│   ├── ToolError                  a Python tool that is not registered or badly called
│   ├── TaskInputError             an SLM step's inputs that its kind can't use
│   ├── SchemaError                an output schema the grammar compiler can't handle
│   ├── ConfigError                a bad setting (queue name, URL, secret)
│   │   └── PlannerRequiredError   a goal that needs an LLM planner, and no endpoint is set
│   ├── MissingExtraError          a local model or server (`[local]`), or training (`[learn]`)
│   └── RunNotFoundError           a run id that never existed or has expired
├── InfrastructureError            something outside us is down: exit code 3
│   ├── RedisUnavailableError      Redis can't be reached (names the URL)
│   ├── EndpointUnavailableError   the OpenAI-compatible endpoint can't be reached
│   ├── CheckpointerUnavailableError  the checkpointer's PostgreSQL can't be reached
│   └── WorkerLostError            workers died: a job's lease ran out too often, or
│                                  every local worker of the embedded cluster exited
├── RunFailedError                 a run ended without its output: exit code 1
│   ├── StepFailedError            a step failed after its retries
│   │   └── StepSkippedError       a step not run because a dependency failed
│   │   ├── ReviewRejectedError    a person rejected the step's value under review
│   │   └── ReviewTimedOutError    nobody answered the step's review in review_timeout_s
│   ├── RunCancelledError          the run was cancelled
│   └── BudgetExceededError        a run budget (cost, LLM calls, steps) was reached
├── SteeringError                  raised to steer execution, and handled by the runtime
│   └── OutputValidationError      a model output that fails its schema: re-ask, then
│                                  escalate to the LLM, then fail the step
├── ModelError                     the model backend failed (a decode error, a grammar
│                                  with no allowed token)
├── StepTimeoutError               a step ran past its deadline (`timeout_s`): retried
│                                  per policy, then the step fails
└── JobRejectedError               a job payload a worker refuses (bad signature, unknown kind)
```

Each class says whether another attempt could help (`is_retryable`): a user's mistake
or a refused job never is; a model output that failed its schema was already re-asked.
Errors cross processes as `taskloom.step.ErrorInfo` and come back as the same class
(`ErrorInfo.to_exception`).
"""

from __future__ import annotations

from typing import Any


class TaskloomWarning(UserWarning):
    """A warning from taskloom (e.g. text truncated to fit the context window)."""


class TaskloomError(Exception):
    """The root of every taskloom error.

    Args:
        message: one line that says what is wrong and what to do next.
        run_id: the run it concerns, when known.
        step_id: the step it concerns, when known.
    """

    exit_code: int = 1
    is_retryable: bool = True
    """Whether another attempt of the step could succeed."""

    def __init__(
        self, message: str, *, run_id: str | None = None, step_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.run_id = run_id
        self.step_id = step_id

    def __str__(self) -> str:
        where = f"step {self.step_id!r}: " if self.step_id else ""
        return f"{where}{self.message}"


class UserError(TaskloomError):
    """The caller's mistake; fixing the input fixes it."""

    exit_code = 2
    is_retryable = False


class PlanValidationError(UserError):
    """A plan that breaks the wire format. `problems` holds every reason at once."""

    def __init__(self, problems: list[str], *, source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        self.record: Any = None
        """A goal run's record when its planning failed (every rejected plan in its
        `rounds`), so that `run --goal --json` can print it; None otherwise."""
        where = f"{source}: " if source else ""
        count = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(f"{where}invalid plan, {count}: " + "; ".join(problems))


class InputError(UserError):
    """Run inputs that are not usable (not JSON, not an object, missing a field)."""


class TargetError(UserError):
    """A run target that cannot be loaded (no such file, module or attribute)."""


class ModelFileError(UserError):
    """A GGUF model file that is missing, unreadable or corrupt."""


class ToolError(UserError):
    """A Python tool that is not registered, or called with the wrong arguments."""


class TaskInputError(UserError):
    """Inputs an SLM kind cannot use (e.g. an empty passage list)."""


class SchemaError(UserError):
    """An output schema that is not valid JSON Schema or cannot become a grammar."""


class ConfigError(UserError):
    """A setting that cannot be used (a queue name, a URL, a secret)."""


class PlannerRequiredError(ConfigError):
    """A goal the router sends to the LLM planner, with no endpoint configured to plan it."""


class MissingExtraError(UserError):
    """Something that needs the `local` extra (llama.cpp, the default model, the embedded
    server) or the `learn` extra (adapter training), run where it is not installed."""


class RunNotFoundError(UserError):
    """A run id that never existed, or whose record has expired."""


class InfrastructureError(TaskloomError):
    """A service we depend on is unavailable; retry once it is back."""

    exit_code = 3


class RedisUnavailableError(InfrastructureError):
    """Redis (or the embedded server) cannot be reached."""


class EndpointUnavailableError(InfrastructureError):
    """The OpenAI-compatible endpoint cannot be reached or keeps failing."""


class CheckpointerUnavailableError(InfrastructureError):
    """The PostgreSQL server of a `postgresql://` checkpointer cannot be reached."""


class WorkerLostError(InfrastructureError):
    """Workers stopped answering: a job outlived its lease too often, or they all exited."""


class RunFailedError(TaskloomError):
    """A run ended without producing its output."""

    exit_code = 1
    is_retryable = False


class StepFailedError(RunFailedError):
    """A step failed after all its attempts.

    Args:
        raw_output: the model's last raw output, when the failure was a bad output.
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str | None = None,
        step_id: str | None = None,
        raw_output: str | None = None,
    ) -> None:
        super().__init__(message, run_id=run_id, step_id=step_id)
        self.raw_output = raw_output


class StepSkippedError(StepFailedError):
    """A step that did not run because a step it depends on failed."""


class ReviewRejectedError(StepFailedError):
    """A person rejected a step's value under review; the run fails, finished results kept."""


class ReviewTimedOutError(StepFailedError):
    """A review nobody answered within `review_timeout_s`: the step fails as `timed_out`."""


class RunCancelledError(RunFailedError):
    """The run was cancelled before it finished."""


class BudgetExceededError(RunFailedError):
    """A run budget was reached; planning or escalation stopped there.

    Args:
        budget: which budget: `max_cost_usd`, `max_llm_calls` or `max_steps`.
        where: what was about to spend it (`planning`, `joining`, `escalation`, a step).
    """

    def __init__(self, message: str, *, budget: str, where: str, run_id: str | None = None) -> None:
        super().__init__(message, run_id=run_id)
        self.budget = budget
        self.where = where


class SteeringError(TaskloomError):
    """Raised to steer execution: the runtime catches it and decides what happens next."""


class OutputValidationError(SteeringError):
    """A model output that does not match the step's schema: re-asked, then escalated.

    Args:
        raw_output: the model's last raw output.
    """

    is_retryable = False  # the re-asks already happened inside the kind

    def __init__(
        self,
        message: str,
        *,
        raw_output: str,
        run_id: str | None = None,
        step_id: str | None = None,
    ) -> None:
        super().__init__(message, run_id=run_id, step_id=step_id)
        self.raw_output = raw_output


class ModelError(TaskloomError):
    """The model backend failed: llama_decode returned an error, or the grammar left no
    token to choose. Another attempt (a fresh cache) may succeed."""


class StepTimeoutError(TaskloomError):
    """A step that ran past its deadline. Another attempt may be faster, so it is retried.

    Args:
        timeout_s: the limit it ran past, in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        timeout_s: float | None = None,
        run_id: str | None = None,
        step_id: str | None = None,
    ) -> None:
        super().__init__(message, run_id=run_id, step_id=step_id)
        self.timeout_s = timeout_s


class JobRejectedError(TaskloomError):
    """A job payload that a worker refuses to run (bad signature, unknown kind, corrupt)."""

    is_retryable = False


ERRORS: dict[str, type[TaskloomError]] = {}
"""Every error class by name: how an ErrorInfo that crossed a process becomes one again."""


def _register(cls: type[TaskloomError]) -> None:
    ERRORS[cls.__name__] = cls
    for sub in cls.__subclasses__():
        _register(sub)


_register(TaskloomError)
