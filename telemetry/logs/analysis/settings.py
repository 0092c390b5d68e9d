"""Settings of ``vigil logs analyze`` (env prefix ``VIGIL_LOGS_``)."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.log_analysis import LLMProviderName
from contracts.ports import LLM_SERVER_PORT

# llama.cpp's server as ``vigil rag llm-server`` starts it (on its default port).
LOCAL_LLM_BASE_URL = f"http://127.0.0.1:{LLM_SERVER_PORT}/v1"


class LogAnalysisSettings(BaseSettings):
    """Windows, thresholds and the LLM of the log analysis.

    The API key has no default: it comes from ``VIGIL_LOGS_LLM_API_KEY``, or, when that is
    unset, from the provider SDK's own variable (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``).
    It is never logged, printed or written into a report.
    """

    model_config = SettingsConfigDict(env_prefix="VIGIL_LOGS_", extra="ignore")

    llm_provider: LLMProviderName = Field(
        default="openai_compatible",
        description="openai_compatible (llama.cpp, vLLM), openai or anthropic (official SDKs).",
    )
    llm_base_url: str | None = Field(
        default=None,
        description="API base URL; None: the local llama.cpp server for openai_compatible, "
        "the SDK's default for openai and anthropic.",
    )
    llm_model: str | None = Field(
        default=None,
        description="Model name; None asks an openai_compatible server for its first model "
        "(required for openai and anthropic).",
    )
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(default=180.0, gt=0, description="Per window request.")
    llm_max_tokens: int = Field(default=512, ge=64)
    llm_temperature: float = Field(default=0.1, ge=0.0, le=2.0)
    llm_max_windows: int = Field(
        default=4, ge=0, description="Windows sent to the LLM: the most eventful ones."
    )
    llm_concurrency: int = Field(default=1, ge=1, description="LLM requests at once.")
    window_tokens: int = Field(default=1024, ge=64, description="Token budget of a window.")
    window_overlap: float = Field(
        default=0.1, ge=0.0, le=0.5, description="Share of a window repeated in the next one."
    )
    window_max_records: int = Field(
        default=500,
        ge=1,
        description="A window also closes after this many records: collapsed repeats cost "
        "no tokens, and without it a window of few templates would swallow the whole log.",
    )
    tokenizer: Literal["auto", "server", "approximate"] = Field(
        default="auto",
        description="auto: the server's /tokenize when an LLM is used, else approximate.",
    )
    workers: int | None = Field(
        default=None, ge=1, description="Processes for several files (default: CPU count)."
    )
    parallel_min_bytes: int = Field(
        default=8 << 20,
        ge=0,
        description="Several files are analysed in worker processes only when they hold this "
        "many bytes together: each worker first imports the parser, a second or two that "
        "small files do not win back.",
    )
    max_findings: int = Field(
        default=25, ge=1, description="Deterministic findings kept per file, most severe first."
    )
    rare_max_count: int = Field(
        default=2, ge=1, description="A template seen at most this often is rare."
    )
    burst_window_s: float = Field(
        default=60.0, gt=0, description="Window of the burst and spike detector, in seconds."
    )


@lru_cache
def get_log_analysis_settings() -> LogAnalysisSettings:
    """The process-wide settings, built on first use (never at import)."""
    return LogAnalysisSettings()
