"""The inline dispatcher: steps run in this process, on the run's thread pool."""

from __future__ import annotations

import threading
from collections.abc import Callable

from taskloom.chat import ChatModel, load_model
from taskloom.config import Settings
from taskloom.dispatch.base import with_retries
from taskloom.logs import get_logger
from taskloom.step import StepJob, StepResult
from taskloom.tools import ToolRegistry
from taskloom.tools.execute import execute

log = get_logger(__name__)


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
        return with_retries(job, self._attempt, settings=self.settings)

    def _attempt(self, job: StepJob) -> tuple[StepResult, bool]:
        result = execute(
            job, model=self.model, tools=self.tools, settings=self.settings, worker="inline"
        )
        return result, False

    def close(self) -> None:
        model, self._model = self._model, None
        close = getattr(model, "close", None)
        if callable(close):
            close()
