"""Settings, defaults and Redis key names: every tunable lives here.

Settings come from the environment (`TASKLOOM_*`, `OPENAI_*`) and may be overridden by
CLI flags or by passing a `Settings` explicitly. Nothing reads the environment after
`Settings.from_env()`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from taskloom.errors import ConfigError

DEFAULT_QUEUE = "slm"
RUNS_QUEUE = "runs"
MAX_STEPS = 64
SLM_CONCURRENCY = 16
"""Steps an SLM worker decodes together by default (README: "Choosing the concurrency")."""
KEY_PREFIX = "taskloom"
PRICES_USD_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o4-mini": (1.10, 4.40),
}
"""(prompt, completion) dollars per million tokens, by model-name prefix (longest wins)."""

UNKNOWN_PRICE_USD_PER_MTOK = (0.50, 1.50)
"""For models not in the table: a mid-range price, so budgets still mean something."""

# Queue names become Redis keys and show in RQ's tools: no spaces, no control characters.
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}$")


class Settings(BaseModel):
    """Everything configurable, with the defaults a local run needs."""

    redis_url: str | None = Field(None, description="Redis URL; None starts the embedded server")
    model: str | None = Field(None, description="GGUF model path; None uses the default model")
    secret: str | None = Field(None, description="HMAC key for job payloads")
    openai_base_url: str | None = Field(None, description="OpenAI-compatible endpoint")
    openai_api_key: str | None = Field(None, description="API key for the endpoint")
    planner_model: str = Field("gpt-4o-mini", description="model name the planner asks for")
    home: Path = Field(
        default_factory=lambda: Path.home() / ".local" / "share" / "taskloom",
        description="where local run state (SQLite checkpoints) is kept",
    )
    max_steps: int = Field(MAX_STEPS, description="the most steps a plan may have")
    max_attempts: int = Field(3, description="attempts per step before it fails")
    retry_backoff_s: float = Field(0.2, description="first retry delay; doubles each time")
    output_retries: int = Field(2, description="re-asks when a model output fails validation")
    lease_s: float = Field(5.0, description="seconds before a silent worker's job is re-queued")
    max_concurrency: int = Field(64, description="steps of one run in flight at once")
    slm_usd_per_mtok: float = Field(0.02, description="SLM price per million tokens")
    record_ttl_s: int = Field(7 * 24 * 3600, description="how long run records are kept")
    n_ctx: int = Field(4096, ge=256, description="the model host's context window, in tokens")
    n_threads: int | None = Field(None, description="CPU threads for the model; None: all cores")
    concurrency: int = Field(
        SLM_CONCURRENCY, ge=1, description="steps one SLM worker decodes at once (batched)"
    )
    n_gpu_layers: int | None = Field(
        None, description="layers offloaded to the GPU; None: all when `gpu` is set, else none"
    )
    gpu: int | None = Field(None, description="the GPU index the model runs on; None: CPU")
    model_usd_per_mtok: dict[str, float] = Field(
        default_factory=dict,
        description="price per million tokens by model name; others cost slm_usd_per_mtok",
    )
    planner_timeout_s: float = Field(60.0, gt=0, description="per-request LLM timeout")
    planner_retries: int = Field(3, ge=0, description="LLM retries on 429/5xx/timeouts")
    planner_backoff_s: float = Field(0.5, ge=0, description="first LLM retry delay; doubles")
    plan_repairs: int = Field(2, ge=0, description="times a bad plan goes back to the model")
    max_replans: int = Field(2, ge=0, description="replans the joiner may ask for")
    llm_usd_per_mtok: tuple[float, float] | None = Field(
        None, description="LLM (prompt, completion) price per million tokens; None: by model"
    )
    route_threshold: float = Field(
        0.5, ge=0, le=1, description="complexity above which a request goes to the LLM planner"
    )
    escalate_below: float = Field(
        0.5, ge=0, le=1, description="SLM confidence below which a step is re-run on the LLM"
    )
    max_cost_usd: float | None = Field(None, ge=0, description="budget: dollars per run")
    max_llm_calls: int | None = Field(None, ge=0, description="budget: LLM calls per run")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read settings from the environment (`TASKLOOM_*`, `OPENAI_*`)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        names = {
            "TASKLOOM_REDIS_URL": "redis_url",
            "TASKLOOM_MODEL": "model",
            "TASKLOOM_SECRET": "secret",
            "OPENAI_BASE_URL": "openai_base_url",
            "OPENAI_API_KEY": "openai_api_key",
            "TASKLOOM_PLANNER_MODEL": "planner_model",
            "TASKLOOM_PLANNER_TIMEOUT_S": "planner_timeout_s",
            "TASKLOOM_PLANNER_RETRIES": "planner_retries",
            "TASKLOOM_PLANNER_BACKOFF_S": "planner_backoff_s",
            "TASKLOOM_HOME": "home",
            "TASKLOOM_LEASE_S": "lease_s",
            "TASKLOOM_MAX_ATTEMPTS": "max_attempts",
            "TASKLOOM_N_CTX": "n_ctx",
            "TASKLOOM_N_THREADS": "n_threads",
            "TASKLOOM_CONCURRENCY": "concurrency",
            "TASKLOOM_N_GPU_LAYERS": "n_gpu_layers",
            "TASKLOOM_GPU": "gpu",
        }
        for var, field in names.items():
            if env.get(var):
                values[field] = env[var]
        return cls.model_validate(values)

    def override(self, **values: object) -> Settings:
        """A copy with the given values (None means "not given"), validated.

        Raises:
            ConfigError: a name that is not a setting, or a value it can't take.
        """
        given = {k: v for k, v in values.items() if v is not None}
        unknown = sorted(set(given) - set(type(self).model_fields))
        if unknown:
            raise ConfigError(
                f"unknown option {', '.join(unknown)}; see taskloom.Settings for the options"
            )
        try:
            return self.model_validate({**self.model_dump(), **given})
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"option {where}: {first['msg']}") from e

    @property
    def state_path(self) -> Path:
        """The SQLite file that holds local runs: LangGraph checkpoints and run records."""
        return self.home / "runs.sqlite"

    def price_per_mtok(self, model: str, *, is_llm: bool = False) -> tuple[float, float]:
        """(prompt, completion) dollars per million tokens of `model`.

        A model in `model_usd_per_mtok` has its own price. Otherwise the large model
        costs `llm_usd_per_mtok`, else the price of the longest matching name in
        PRICES_USD_PER_MTOK, else a mid-range price; a small model costs `slm_usd_per_mtok`.
        """
        if model in self.model_usd_per_mtok:
            price = self.model_usd_per_mtok[model]
            return price, price
        if not is_llm:
            return self.slm_usd_per_mtok, self.slm_usd_per_mtok
        if self.llm_usd_per_mtok is not None:
            return self.llm_usd_per_mtok
        matches = [name for name in PRICES_USD_PER_MTOK if model.startswith(name)]
        return PRICES_USD_PER_MTOK[max(matches, key=len)] if matches else UNKNOWN_PRICE_USD_PER_MTOK

    def cost_usd(
        self, model: str, prompt_tokens: int, completion_tokens: int, *, is_llm: bool = False
    ) -> float:
        """What a call to `model` with these token counts costs, in dollars."""
        prompt_price, completion_price = self.price_per_mtok(model, is_llm=is_llm)
        return (prompt_tokens * prompt_price + completion_tokens * completion_price) / 1e6


def key(*parts: str) -> str:
    """A Redis key under taskloom's prefix, e.g. `key("result", run_id, step_id)`."""
    return ":".join((KEY_PREFIX, *parts))
