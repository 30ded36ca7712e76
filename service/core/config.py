"""All settings in one typed object, read from the environment once (prefix CITESUM_)."""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Policy = Literal["drop", "flag", "repair"]


class Settings(BaseSettings):
    """Service settings. Standard OpenAI variable names are honoured for the key and base URL."""

    model_config = SettingsConfigDict(
        env_prefix="CITESUM_", env_file=None, extra="ignore", populate_by_name=True, use_attribute_docstrings=True
    )

    # --- LLM provider -------------------------------------------------------------------------
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "CITESUM_OPENAI_API_KEY")
    )
    """API key for the OpenAI-compatible server; setting it (or the base URL) switches from the embedded default to the model."""
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "CITESUM_OPENAI_BASE_URL")
    )
    """Base URL of an OpenAI-compatible server (Azure OpenAI v1, vLLM, Ollama, llama.cpp); unset means api.openai.com."""
    provider: Literal["auto", "embedded", "openai"] = "auto"
    """`auto`: a model when a key or base URL is set, else the embedded extractive default; `embedded` or `openai` force one."""
    model: str = "gpt-4o-mini"
    """Model name sent to the server (Azure: the deployment name)."""
    context_window_tokens: int = Field(default=128_000, ge=2_000)
    """The model's context window; the chunk budget is this minus the prompt and completion reserve."""
    completion_max_tokens: int = Field(default=1_200, ge=64)
    """`max_tokens` for each model reply."""
    structured_output: Literal["json_schema", "json_object_schema", "json_object", "none"] = "json_schema"
    """Starting response format (`json_object_schema`: the schema inside a json_object format, as llama-cpp-python's server reads it); a server that refuses one is asked again with the next plainer one. Parallel parts answer in a plain cited line, asked without a response format (docs/models.md)."""
    llm_stream: bool = True
    """Stream the model's reply (`stream: true`) when the caller streams the summary (SSE, `--stream`, Slack)."""
    sse_ping_s: float = Field(default=15.0, gt=0, le=300)
    """Seconds of silence after which a streamed (SSE) summary sends a `: ping` comment, so proxies keep the connection open."""
    temperature: float = 0.0
    """Sampling temperature for summaries."""

    # --- chunking -----------------------------------------------------------------------------
    # 0 means "derive from the model's context window" (see chunking.chunk_budget).
    chunk_tokens: int = Field(default=0, ge=0)
    """Force a chunk budget in (estimated) tokens; 0 derives it from the context window."""
    map_concurrency: int = Field(default=8, ge=1, le=64)
    """Chunk summaries in flight at once for one long article."""

    # --- retries and timeouts (tenacity owns transport retries; the openai client's are 0) ----
    llm_timeout_s: float = Field(default=60.0, gt=0)
    """Timeout of one model call."""
    llm_max_attempts: int = Field(default=4, ge=1, le=10)
    """Attempts per model call for connection errors, timeouts, 408/409/429 and 5xx."""
    llm_retry_deadline_s: float = Field(default=120.0, gt=0)
    """Total time the retries of one call may take."""
    llm_backoff_initial_s: float = Field(default=0.5, ge=0)
    """First backoff (doubles per attempt, with jitter) when the server gives no Retry-After."""
    llm_backoff_max_s: float = Field(default=8.0, ge=0)
    """Longest single wait, including a server's Retry-After."""
    llm_reask_attempts: int = Field(default=1, ge=0, le=3)
    """Re-asks when a reply is not valid JSON of the schema (the error is fed back)."""
    request_deadline_s: float = Field(default=180.0, gt=0)
    """Deadline of one whole summary; past it 504 and the model calls in flight are cancelled."""

    # --- summary defaults ---------------------------------------------------------------------
    default_max_sentences: int = Field(default=5, ge=1, le=30)
    """Summary length when the request does not say."""
    default_policy: Policy = "drop"
    """What happens to unsupported sentences when the request does not say."""
    verify_threshold: float | None = Field(default=None, ge=0, le=1)
    """Verifier score at or above which a sentence is supported; unset uses the shipped threshold."""
    # LLM judge (service/pipeline/judge.py): sentences whose score is within this band of the threshold
    # are re-checked by the configured LLM; 0 turns the judge off. On by default with a model (issue 16):
    # a vetoed sentence scores at most threshold/2 = 0.25, outside the band, so hard checks stay final.
    verify_judge_band: float = Field(default=0.15, ge=0, le=0.5)
    """With a model configured: sentences scoring within this band of the threshold are judged again by the model (one extra call, only when such a sentence exists); 0 turns the judge off."""

    # --- optional NLI model (the `[nli]` extra; docs/verifier.md "Bring your own NLI model") -------
    # Unset = off: nothing of onnxruntime or tokenizers is imported. The tokenizer is declared before the
    # model so the model's validator can check it (pydantic validates fields in declaration order).
    nli_tokenizer_path: Path | None = None
    """The NLI model's `tokenizer.json` (Hugging Face `tokenizers` format); unset: `tokenizer.json` next to the model file."""
    nli_model_path: Path | None = None
    """An ONNX sequence-pair classifier (premise = evidence, hypothesis = claim) run with onnxruntime; its entailment probability can veto or lift a verdict. Needs `pip install 'citesum[nli]'`; unset: off."""
    nli_entailment_index: int = Field(default=2, ge=0)
    """Which output logit is "entailment": 2 for the usual MNLI order contradiction, neutral, entailment (roberta-large-mnli, deberta-*-mnli); check your model's `id2label`."""
    nli_max_length: int = Field(default=256, ge=8, le=4_096)
    """Longest token sequence (evidence + claim) fed to the NLI model; longer pairs are truncated."""
    nli_veto_below: float = Field(default=0.1, ge=0, le=1)
    """A supported sentence whose best entailment probability is below this becomes unsupported (0: never)."""
    nli_lift_above: float = Field(default=0.9, ge=0, le=1)
    """An unsupported sentence within `CITESUM_NLI_LIFT_BAND` of the threshold, with no failed hard check, becomes supported when its entailment probability is at least this."""
    nli_lift_band: float = Field(default=0.15, ge=0, le=0.5)
    """How far below the threshold a sentence may score and still be lifted by the NLI model (0: never lifted)."""

    # --- input limits -------------------------------------------------------------------------
    max_body_bytes: int = Field(default=2_000_000, ge=1_000)
    """Largest request body (413 past it)."""
    max_article_chars: int = Field(default=400_000, ge=100)
    """Largest article after extraction, in characters (413)."""
    min_article_chars: int = Field(default=40, ge=1)
    """Smallest usable article after cleaning (422 below it)."""

    # --- load limits, circuit breaker, access, logs (docs/operations.md) ------------------------
    max_article_tokens: int = Field(default=100_000, ge=100)  # estimated offline (chunking.estimate_tokens)
    """Largest article in estimated tokens (413)."""
    max_inflight_requests: int = Field(default=64, ge=1)  # /v1/* at once; past it 503 overloaded
    """`/v1/*` requests handled at once; past it 503 `overloaded` with Retry-After, no queue."""
    max_inflight_llm_calls: int = Field(default=32, ge=1)  # HTTP calls to the model at once, per process
    """Model HTTP calls in flight at once, per process; waiting counts against the request deadline."""
    breaker_failure_threshold: int = Field(default=5, ge=1)  # consecutive upstream failures that open it
    """Consecutive upstream failures that open the circuit breaker (fail fast with 503)."""
    breaker_cooldown_s: float = Field(default=30.0, gt=0)  # open this long, then one probe (half-open)
    """How long the breaker stays open before one probe request is let through."""
    # Comma-separated bearer keys for /v1/* and /metrics; unset = open (loopback only, see allow_open).
    api_keys: SecretStr | None = None
    """Comma-separated bearer keys required on `/v1/*` and `/metrics`; unset runs open (loopback only)."""
    allow_open: bool = False  # serve without API keys on a non-loopback host
    """Allow `serve` without API keys on a non-loopback host."""
    # Requests per minute per API key (per client IP when open). None: 120 with keys, off when open.
    rate_limit_per_minute: int | None = Field(default=None, ge=0)
    """Requests per minute per API key (per client IP when open); unset: 120 with keys, off when open."""
    log_format: Literal["json", "text"] | None = None  # None: json for `serve`, text for the CLI
    """`json` or `text`; unset: json for `serve`, text for the CLI."""
    # Idle keep-alive before `serve` closes a connection; above clients' own idle expiry (httpx: 5 s),
    # or a request sent on a connection just as the server closes it fails (seen under load at 5 s).
    http_keep_alive_s: float = Field(default=65.0, gt=0)
    """Idle keep-alive before `serve` closes a connection (kept above clients' idle expiry)."""
    http_max_header_bytes: int = Field(default=65_536, ge=1_024)
    """Largest request line plus headers `serve` reads (431 and closed past it)."""
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    """Time a client has to send a request's headers (408 and closed past it)."""
    http_max_connections: int = Field(default=1_000, ge=1)
    """Open connections per `serve` process; a new one past it gets 503 and is closed (keep under `ulimit -n`)."""
    language_check: bool = True  # refuse articles that are not English with 422 (docs/operations.md)
    """Refuse non-English articles with 422 (the verifier and extractive ranker are English-tuned)."""

    # --- URL fetching -------------------------------------------------------------------------
    fetch_timeout_s: float = Field(default=10.0, gt=0)
    """Timeout for fetching a URL."""
    fetch_max_bytes: int = Field(default=5_000_000, ge=1_000)
    """Largest page fetched from a URL (413 past it)."""
    fetch_max_redirects: int = Field(default=5, ge=0, le=20)
    """Redirects followed when fetching (each hop's address is checked)."""
    fetch_allow_private: bool = False
    """Allow fetching private, loopback, link-local and metadata addresses (off: refused with 400)."""
    fetch_user_agent: str = "citesum/0.1 (+https://github.com/citesum)"
    """User-Agent sent when fetching URLs."""

    # --- jobs, result cache, workers (docs/operations.md) ------------------------------------------
    # With REDIS_URL set, jobs go through arq/Redis to `python -m service worker` processes and the
    # result cache is shared; without it, a SQLite file holds jobs and cache and the API runs the worker.
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "CITESUM_REDIS_URL", "redis_url")
    )
    """With it set, jobs go through Redis (arq) to `python -m service worker` processes and the result cache is shared."""
    job_db_path: str = Field(default=None, validate_default=True)  # type: ignore[assignment]  # None → data folder
    """SQLite file for jobs and the result cache in embedded mode; unset: `jobs.sqlite3` in the user's data folder (Linux: `~/.local/share/citesum/`), which `serve` names in its first log line."""
    job_max_attempts: int = Field(default=3, ge=1, le=20)
    """Attempts per job (a killed worker's job is retried) before it ends `failed`."""
    # arq re-runs a killed worker's job only after this timeout + 10 s (arq issue #407), so keep it
    # just above request_deadline_s.
    job_timeout_s: float = Field(default=200.0, gt=0)
    """Longest a job attempt may run (Redis mode re-runs a dead worker's job after this + ~10 s)."""
    job_lease_s: float = Field(default=30.0, gt=0)
    """Embedded mode: a running job whose lease is this old is taken as abandoned and re-queued."""
    job_retry_backoff_s: float = Field(default=1.0, ge=0)  # doubled per failed attempt, capped at 30 s
    """Wait before a failed job's next attempt (doubled per attempt, capped at 30 s)."""
    job_concurrency: int = Field(default=4, ge=1, le=256)
    """Jobs one worker runs at once."""
    job_retention_s: int = Field(default=7 * 86_400, ge=60)
    """How long finished jobs (and their idempotency keys) are kept."""
    embedded_worker: bool = True
    """Run a job worker inside the API process (embedded mode)."""
    job_summarizer: str = "service.pipeline.summarize:summarize_request"
    """`module:function` that jobs call (tests swap in fakes)."""
    cache_enabled: bool = True
    """Answer identical requests (content, options, model, prompt version) from the result cache."""
    cache_ttl_s: int = Field(default=86_400, ge=1)
    """How long a cached result is served."""
    # Completion callbacks reuse deliver.py's retry policy (slack_delivery_*); this bounds each POST.
    callback_timeout_s: float = Field(default=10.0, gt=0)
    """Timeout of each job-completion callback POST."""

    # --- server -------------------------------------------------------------------------------
    host: str = "127.0.0.1"
    """Address `serve` binds to."""
    port: int = 8000
    """Port `serve` listens on."""
    log_level: str = "INFO"
    """Logging level."""

    # --- Slack and Slack-compatible chat (service/slack.py, service/deliver.py) ---------------
    # No signing secret means the Slack routes refuse every request (401).
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "CITESUM_SLACK_SIGNING_SECRET", "slack_signing_secret"),
    )
    """Slack app signing secret; without it the Slack routes refuse every request (401)."""
    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "CITESUM_SLACK_BOT_TOKEN", "slack_bot_token")
    )
    """Bot token for thread replies to mentions and DMs (`chat.postMessage`, `chat.update`; scope `chat:write`)."""
    # Hosts a response_url may point at (comma-separated in the environment); anything else is refused.
    slack_response_hosts: Annotated[list[str], NoDecode] = ["hooks.slack.com"]
    """Hosts a `response_url` may point at (comma-separated); anything else is refused."""
    slack_response_type: Literal["in_channel", "ephemeral"] = "in_channel"
    """Where slash-command summaries go by default (`--public`/`--private` override)."""
    slack_api_base_url: str = "https://slack.com/api"
    """Slack Web API base URL (`chat.postMessage`, `chat.update`)."""
    # Slack: a response_url is valid for 30 minutes and 5 uses.
    slack_delivery_attempts: int = Field(default=4, ge=1, le=5)
    """Posts to a `response_url` before giving up (Slack allows 5 uses)."""
    slack_delivery_deadline_s: float = Field(default=1_500.0, gt=0, le=1_800.0)
    """Stop retrying a `response_url` this long after the command (Slack: valid 30 minutes)."""
    slack_delivery_backoff_initial_s: float = Field(default=1.0, ge=0)
    """First wait between delivery attempts (doubles)."""
    slack_delivery_backoff_max_s: float = Field(default=30.0, ge=0)
    """Longest wait between delivery attempts."""
    slack_delivery_timeout_s: float = Field(default=10.0, gt=0)
    """Timeout of each delivery POST."""
    chat_update_interval_s: float = Field(default=3.0, ge=0)
    """Slack and Mattermost: post the first verified sentences early, then update that message in place at most this often (slash commands: `replace_original`; mentions and DMs: `chat.update`; 0: only the final message)."""
    chat_update_max_posts: int = Field(default=2, ge=0, le=3)
    """Early posts per slash command before the final one (a `response_url` takes 5 posts in all; mentions and DMs have no cap)."""
    incoming_webhook_url: str | None = None
    """A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat) that public summaries are also posted to."""
    mattermost_token: SecretStr | None = None
    """Token of a Mattermost slash command (`POST /mattermost/commands`)."""
    parallel_write_tokens: int = Field(default=8_000, ge=0)
    """With a model: an article shown whole whose prompt lines exceed this many (estimated) tokens is written in parallel parts, one summary sentence per part, cut around the sentences the extractive ranker picks (every sentence is in one part; sentences stream in article order); 0 always writes in one call."""
    prompt_token_budget: int = Field(default=0, ge=0)
    """With a model: an article whose prompt lines exceed this many (estimated) tokens is condensed to its lead and most central sentences within it (ids kept; verification still uses the whole article); 0 sends every sentence."""

    workers: int = Field(default=0, ge=0)
    """Worker processes `serve` runs (uvicorn, one shared port); 0: one per CPU (within a cgroup CPU quota). Caps, rate limits and the circuit breaker are per process; /metrics sums all workers."""

    @field_validator(
        "openai_api_key",
        "slack_signing_secret",
        "slack_bot_token",
        "mattermost_token",
        "incoming_webhook_url",
        "api_keys",
        mode="before",
    )
    @classmethod
    def _empty_key_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("nli_tokenizer_path", "nli_model_path", mode="before")
    @classmethod
    def _empty_path_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("nli_model_path")
    @classmethod
    def _nli_model_usable(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        # Checked here so that `serve` and the CLI refuse to start (one line naming the variable), not
        # the first request; find_spec looks for the packages without importing them.
        if value is None:
            return None
        missing = [name for name in ("onnxruntime", "tokenizers") if importlib.util.find_spec(name) is None]
        if missing:
            raise ValueError(f"the NLI model needs {' and '.join(missing)}: pip install 'citesum[nli]'")
        tokenizer = info.data.get("nli_tokenizer_path") or value.parent / "tokenizer.json"
        for kind, path in (("model", value), ("tokenizer", tokenizer)):
            if not path.is_file() or not os.access(path, os.R_OK):
                raise ValueError(f"NLI {kind} file {str(path)!r} is missing or unreadable")
        return value

    @field_validator("job_db_path", mode="before")
    @classmethod
    def _job_db_in_the_data_folder(cls, value: object) -> object:
        return default_job_db_path() if value in ("", None) else value

    @field_validator("slack_response_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [host.strip().lower() for host in value.split(",") if host.strip()]
        return value

    @property
    def nli_tokenizer_file(self) -> Path | None:
        """The NLI tokenizer file in use: the setting, or `tokenizer.json` next to the model."""
        if self.nli_model_path is None:
            return None
        return self.nli_tokenizer_path or self.nli_model_path.parent / "tokenizer.json"

    @property
    def llm_configured(self) -> bool:
        """True when an OpenAI-compatible server should be used instead of the embedded default."""
        if self.provider == "embedded":
            return False
        if self.provider == "openai":
            return True
        return self.openai_api_key is not None or bool(self.openai_base_url)


def default_job_db_path() -> str:
    """`jobs.sqlite3` in the user's data folder (platformdirs), not in whatever folder `serve` starts in."""
    return str(Path(platformdirs.user_data_dir("citesum", appauthor=False)) / "jobs.sqlite3")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
