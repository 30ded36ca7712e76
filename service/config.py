"""All settings in one typed object, read from the environment once (prefix CITESUM_)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Policy = Literal["drop", "flag", "repair"]


class Settings(BaseSettings):
    """Service settings. Standard OpenAI variable names are honoured for the key and base URL."""

    model_config = SettingsConfigDict(env_prefix="CITESUM_", env_file=None, extra="ignore", populate_by_name=True)

    # --- LLM provider -------------------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "CITESUM_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "CITESUM_OPENAI_BASE_URL")
    )
    provider: Literal["auto", "embedded", "openai"] = "auto"
    model: str = "gpt-4o-mini"
    context_window_tokens: int = Field(default=128_000, ge=2_000)
    completion_max_tokens: int = Field(default=1_200, ge=64)
    structured_output: Literal["json_schema", "json_object", "none"] = "json_schema"
    temperature: float = 0.0

    # --- chunking -----------------------------------------------------------------------------
    # 0 means "derive from the model's context window" (see chunking.chunk_budget).
    chunk_tokens: int = Field(default=0, ge=0)
    map_concurrency: int = Field(default=8, ge=1, le=64)

    # --- retries and timeouts (tenacity owns transport retries; the openai client's are 0) ----
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_attempts: int = Field(default=4, ge=1, le=10)
    llm_retry_deadline_s: float = Field(default=120.0, gt=0)
    llm_backoff_initial_s: float = Field(default=0.5, ge=0)
    llm_backoff_max_s: float = Field(default=8.0, ge=0)
    llm_reask_attempts: int = Field(default=1, ge=0, le=3)
    request_deadline_s: float = Field(default=180.0, gt=0)

    # --- summary defaults ---------------------------------------------------------------------
    default_max_sentences: int = Field(default=5, ge=1, le=30)
    default_policy: Policy = "drop"
    verify_threshold: float | None = Field(default=None, ge=0, le=1)
    # LLM judge (service/judge.py): sentences whose score is within this band of the threshold are
    # re-checked by the configured LLM; 0 turns the judge off.
    verify_judge_band: float = Field(default=0.0, ge=0, le=0.5)

    # --- input limits -------------------------------------------------------------------------
    max_body_bytes: int = Field(default=2_000_000, ge=1_000)
    max_article_chars: int = Field(default=400_000, ge=100)
    min_article_chars: int = Field(default=40, ge=1)

    # --- load limits, circuit breaker, access, logs (docs/hardening.md) ------------------------
    max_article_tokens: int = Field(default=100_000, ge=100)  # estimated offline (chunking.estimate_tokens)
    max_inflight_requests: int = Field(default=64, ge=1)  # /v1/* at once; past it 503 overloaded
    max_inflight_llm_calls: int = Field(default=8, ge=1)  # HTTP calls to the model at once, per process
    breaker_failure_threshold: int = Field(default=5, ge=1)  # consecutive upstream failures that open it
    breaker_cooldown_s: float = Field(default=30.0, gt=0)  # open this long, then one probe (half-open)
    # Comma-separated bearer keys for /v1/* and /metrics; unset = open (loopback only, see allow_open).
    api_keys: SecretStr | None = None
    allow_open: bool = False  # serve without API keys on a non-loopback host
    # Requests per minute per API key (per client IP when open). None: 120 with keys, off when open.
    rate_limit_per_minute: int | None = Field(default=None, ge=0)
    log_format: Literal["json", "text"] | None = None  # None: json for `serve`, text for the CLI
    # Idle keep-alive before `serve` closes a connection; above clients' own idle expiry (httpx: 5 s),
    # or a request sent on a connection just as the server closes it fails (seen under load at 5 s).
    http_keep_alive_s: float = Field(default=65.0, gt=0)
    language_check: bool = True  # refuse articles that are not English with 422 (docs/hardening.md)

    # --- URL fetching -------------------------------------------------------------------------
    fetch_timeout_s: float = Field(default=10.0, gt=0)
    fetch_max_bytes: int = Field(default=5_000_000, ge=1_000)
    fetch_max_redirects: int = Field(default=5, ge=0, le=20)
    fetch_allow_private: bool = False
    fetch_user_agent: str = "citesum/0.1 (+https://github.com/citesum)"

    # --- jobs, result cache, workers (docs/jobs.md) ------------------------------------------
    # With REDIS_URL set, jobs go through arq/Redis to `python -m service worker` processes and the
    # result cache is shared; without it, a SQLite file holds jobs and cache and the API runs the worker.
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "CITESUM_REDIS_URL", "redis_url")
    )
    job_db_path: str = "citesum-jobs.sqlite3"
    job_max_attempts: int = Field(default=3, ge=1, le=20)
    # arq re-runs a killed worker's job only after this timeout + 10 s (arq issue #407), so keep it
    # just above request_deadline_s.
    job_timeout_s: float = Field(default=200.0, gt=0)
    job_lease_s: float = Field(default=30.0, gt=0)
    job_retry_backoff_s: float = Field(default=1.0, ge=0)  # doubled per failed attempt, capped at 30 s
    job_concurrency: int = Field(default=4, ge=1, le=256)
    job_retention_s: int = Field(default=7 * 86_400, ge=60)
    embedded_worker: bool = True
    job_summarizer: str = "service.summarize:summarize_request"
    cache_enabled: bool = True
    cache_ttl_s: int = Field(default=86_400, ge=1)
    # Completion callbacks reuse deliver.py's retry policy (slack_delivery_*); this bounds each POST.
    callback_timeout_s: float = Field(default=10.0, gt=0)

    # --- server -------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"

    # --- Slack and Slack-compatible chat (service/slack.py, service/deliver.py) ---------------
    # No signing secret means the Slack routes refuse every request (401).
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "CITESUM_SLACK_SIGNING_SECRET", "slack_signing_secret"),
    )
    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "CITESUM_SLACK_BOT_TOKEN", "slack_bot_token")
    )
    # Hosts a response_url may point at (comma-separated in the environment); anything else is refused.
    slack_response_hosts: Annotated[list[str], NoDecode] = ["hooks.slack.com"]
    slack_response_type: Literal["in_channel", "ephemeral"] = "in_channel"
    slack_api_base_url: str = "https://slack.com/api"
    # Slack: a response_url is valid for 30 minutes and 5 uses.
    slack_delivery_attempts: int = Field(default=4, ge=1, le=5)
    slack_delivery_deadline_s: float = Field(default=1_500.0, gt=0, le=1_800.0)
    slack_delivery_backoff_initial_s: float = Field(default=1.0, ge=0)
    slack_delivery_backoff_max_s: float = Field(default=30.0, ge=0)
    slack_delivery_timeout_s: float = Field(default=10.0, gt=0)
    incoming_webhook_url: str | None = None
    mattermost_token: SecretStr | None = None

    @field_validator(
        "openai_api_key", "slack_signing_secret", "slack_bot_token", "mattermost_token", "incoming_webhook_url",
        "api_keys", mode="before",
    )
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("slack_response_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [host.strip().lower() for host in value.split(",") if host.strip()]
        return value

    @property
    def llm_configured(self) -> bool:
        """True when an OpenAI-compatible server should be used instead of the embedded default."""
        if self.provider == "embedded":
            return False
        if self.provider == "openai":
            return True
        return self.openai_api_key is not None or bool(self.openai_base_url)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
