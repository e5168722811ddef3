"""Settings, defaults and Redis key names: every tunable lives here.

Settings come from the environment through pydantic-settings: every field `name` reads
`TASKLOOM_NAME` (the endpoint and its key read `OPENAI_BASE_URL` and `OPENAI_API_KEY`),
and may be overridden by CLI flags or by passing values explicitly. Complex fields take
JSON (`TASKLOOM_MODEL_USD_PER_MTOK='{"m": 0.1}'`). Secrets are `SecretStr`: never shown
by repr, logs or records; read them with `.get_secret_value()`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from taskloom.errors import ConfigError

DEFAULT_QUEUE = "slm"
RUNS_QUEUE = "runs"
MAX_STEPS = 64
SLM_CONCURRENCY = 16
"""Steps an SLM worker decodes together by default (docs/batching.md, "Choosing the
concurrency and threads")."""
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


class Settings(BaseSettings):
    """Everything configurable, with the defaults a local run needs.

    `Settings()` reads the environment; `Settings.from_env()` says so at the call site.
    """

    model_config = SettingsConfigDict(
        env_prefix="TASKLOOM_", env_ignore_empty=True, extra="forbid", validate_default=True
    )

    redis_url: str | None = Field(None, description="Redis URL; None starts the embedded server")
    model: str | None = Field(None, description="GGUF model path; None uses the default model")
    secret: SecretStr | None = Field(None, description="HMAC key for job payloads and results")
    openai_base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("openai_base_url", "OPENAI_BASE_URL"),
        description="OpenAI-compatible endpoint (OPENAI_BASE_URL)",
    )
    openai_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("openai_api_key", "OPENAI_API_KEY"),
        description="API key for the endpoint (OPENAI_API_KEY)",
    )
    planner_model: str = Field("gpt-4o-mini", description="model name the planner asks for")
    home: Path = Field(
        default_factory=lambda: Path.home() / ".local" / "share" / "taskloom",
        description="where local run state (SQLite checkpoints) is kept",
    )
    examples: Path | None = Field(
        None,
        description="the example bank's folder: labelled answers per step signature, shared"
        " by every box that learns; None: HOME/examples",
    )
    learned: bool = Field(
        True,
        description="SLM steps use what `taskloom learn` learned for their signature"
        " (few-shot examples, thresholds); false (--no-learned) runs them as written",
    )
    bank_answers: bool = Field(
        True,
        description="keep each escalation's accepted LLM answer in the example bank,"
        " for `taskloom learn`",
    )
    adapters_kept: int = Field(
        2,
        ge=0,
        description="adapter files no lesson names that `taskloom learn` keeps, newest first,"
        " to roll back to; older ones are deleted (never one written in the last hour)",
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
    speculate: bool = Field(
        True,
        description="draft tokens from the prompt and the schema and verify them in one"
        " decode (greedy outputs unchanged); false: one decode per token",
    )
    model_usd_per_mtok: dict[str, float] = Field(
        default_factory=dict,
        description="price per million tokens by model name; others cost slm_usd_per_mtok",
    )
    planner_timeout_s: float = Field(60.0, gt=0, description="per-request LLM timeout")
    planner_retries: int = Field(
        3, ge=0, description="LLM retries on 408/409/429/5xx/timeouts (the openai SDK's backoff)"
    )
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
    escalate_flagged: bool = Field(
        True,
        description="re-run on the LLM (when one is configured) the SLM answers the"
        " calibration does not accept; false leaves them flagged for review",
    )
    audit_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="the share of accepted SLM answers also re-run on the LLM (when one is"
        " configured), to measure their precision; the LLM's answer stands",
    )
    review: Literal["uncertain", "never"] = Field(
        "never",
        description="a run's default for steps without `review`: uncertain asks a person"
        " about values the calibration did not accept; never asks nobody",
    )
    review_timeout_s: float | None = Field(
        None, gt=0, description="how long a review waits for a person; None: no limit"
    )
    calibration: str | None = Field(
        None,
        description="calibration file (taskloom calibrate) mapping SLM confidences to"
        " probabilities and saying which answers are accepted; None: the one shipped",
    )
    target_precision: float | None = Field(
        None,
        ge=0.5,
        le=0.999,
        description="the precision accepted SLM answers must reach, with the calibration's"
        " bound; each threshold is chosen again for it from the calibration's frontier;"
        " None: the calibration's own (0.95 shipped)",
    )
    max_cost_usd: float | None = Field(None, ge=0, description="budget: dollars per run")
    max_llm_calls: int | None = Field(None, ge=0, description="budget: LLM calls per run")
    step_timeout_s: float | None = Field(
        None, gt=0, description="a step's deadline per attempt, unless it sets timeout_s"
    )
    no_worker_timeout_s: float = Field(
        60.0, gt=0, description="how long a step waits on a queue no live worker serves"
    )
    redis_sentinels: str | None = Field(
        None, description="host:port,host:port of Redis Sentinels (instead of redis_url)"
    )
    redis_master: str = Field("mymaster", description="the master's name at the Sentinels")
    redis_wait_replicas: int | None = Field(
        None, ge=0, description="replicas a finished step must reach (WAIT); None: 1 on Sentinel"
    )
    checkpointer: str | None = Field(
        None,
        description="where LangGraph checkpoints go: sqlite:///PATH or postgresql://…; "
        "None: the local runs.sqlite",
    )

    # A box's supervisor (`taskloom worker --gpus/--processes`) and its metrics.
    restart_backoff_s: float = Field(
        1.0, gt=0, description="first delay before a dead worker is restarted; doubles"
    )
    crash_loop_exits: int = Field(
        5, ge=1, description="exits within crash_loop_window_s after which a worker stays down"
    )
    crash_loop_window_s: float = Field(
        60.0, gt=0, description="the window in which a worker's exits count as a crash loop"
    )
    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="port for /metrics and /healthz; None: not served"
    )

    @field_validator("checkpointer")
    @classmethod
    def _checkpointer_url(cls, url: str | None) -> str | None:
        if url:
            checkpointer_scheme(url)
        return url

    @model_validator(mode="after")
    def _sentinels_as_url(self) -> Settings:
        # Sentinels given on their own become the redis+sentinel:// URL everything reads.
        if self.redis_sentinels and not self.redis_url:
            self.redis_url = f"redis+sentinel://{self.redis_sentinels}/{self.redis_master}"
        return self

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from the environment (`TASKLOOM_*`, `OPENAI_*`).

        Raises:
            ConfigError: a variable whose value the setting can't take, named.
        """
        try:
            return cls()
        except ValidationError as e:
            first = e.errors()[0]
            name = str(first["loc"][0]) if first["loc"] else "?"
            raise ConfigError(
                f"environment variable {env_var(name)}: {first['msg']}; fix or unset it"
            ) from e

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

    @property
    def examples_path(self) -> Path:
        """The example bank's folder (taskloom.bank)."""
        return self.examples or self.home / "examples"

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


def env_var(name: str) -> str:
    """The environment variable a setting reads, e.g. `lease_s` → `TASKLOOM_LEASE_S`."""
    field = Settings.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[-1])
    return f"TASKLOOM_{name.upper()}"


CHECKPOINTER_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgres", "postgres": "postgres"}


def checkpointer_scheme(url: str) -> str:
    """`sqlite` or `postgres`: the kind of checkpointer a URL names.

    Raises:
        ValueError: another scheme, or a sqlite URL without a path.
    """
    scheme, sep, rest = url.partition("://")
    kind = CHECKPOINTER_SCHEMES.get(scheme.lower()) if sep else None
    if kind is None:
        raise ValueError(
            f"checkpointer URL {url.split('@')[-1]!r} is neither sqlite:///PATH nor "
            "postgresql://USER@HOST/DB"
        )
    if kind == "sqlite" and not rest.startswith("/"):
        raise ValueError(
            f"a sqlite checkpointer needs an absolute path: sqlite:///PATH, not {url!r}"
        )
    return kind


def reveal(secret: SecretStr | None) -> str | None:
    """A secret's text, for the one place that must use it (signing, the API client)."""
    return secret.get_secret_value() if secret is not None else None


def key(*parts: str) -> str:
    """A Redis key under taskloom's prefix, e.g. `key("result", run_id, step_id)`."""
    return ":".join((KEY_PREFIX, *parts))


def settings_for(settings: Settings | None, options: dict[str, Any]) -> Settings:
    """`settings` (or the environment's), with the options that were given applied."""
    return (settings if settings is not None else Settings.from_env()).override(**options)
