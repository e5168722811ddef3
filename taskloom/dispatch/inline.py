"""The inline dispatcher: steps run in this process, on the run's thread pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from taskloom.chat import ChatModel, load_model
from taskloom.config import Settings
from taskloom.step import StepJob, StepResult
from taskloom.tools import ToolRegistry
from taskloom.tools.execute import execute

log = structlog.get_logger(__name__)


class InlineDispatcher:
    """Run steps in-process. The model is created on first use and shared.

    Args:
        model: a chat model, or a factory called once when the first SLM step runs.
        tools: the Python tools steps may call.
        settings: attempts and backoff.
    """

    def __init__(
        self,
        *,
        model: ChatModel | Callable[[], ChatModel] | None = None,
        tools: ToolRegistry | None = None,
        settings: Settings | None = None,
    ) -> None:
        self._factory = model
        self._model: ChatModel | None = None
        self._lock = threading.Lock()
        self.tools = tools if tools is not None else ToolRegistry()
        self.settings = settings if settings is not None else Settings()

    def model(self) -> ChatModel:
        """The shared chat model, created on first use."""
        with self._lock:
            if self._model is None:
                if self._factory is None:
                    self._model = load_model(self.settings)  # as a worker would
                elif isinstance(self._factory, ChatModel):
                    self._model = self._factory
                else:
                    self._model = self._factory()
            return self._model

    def dispatch(self, job: StepJob) -> StepResult:
        delay_s = self.settings.retry_backoff_s
        while True:
            result = execute(
                job, model=self.model, tools=self.tools, settings=self.settings, worker="inline"
            )
            if not result.is_retryable or job.attempt >= self.settings.max_attempts:
                return result
            log.info("step_retrying", run_id=job.run_id, step_id=job.step_id, delay_s=delay_s)
            time.sleep(delay_s)
            delay_s *= 2
            job = job.model_copy(update={"attempt": job.attempt + 1})

    def close(self) -> None:
        model, self._model = self._model, None
        close = getattr(model, "close", None)
        if callable(close):
            close()
