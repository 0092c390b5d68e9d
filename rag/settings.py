"""Settings of the explanation service (env prefix ``VIGIL_RAG_``); Helm values map onto these."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.explanation import ANSWER_DEADLINE_SECONDS
from contracts.ports import LLM_SERVER_PORT

RUNBOOKS_PATH = Path(__file__).parent / "runbooks"
LOCAL_LLM_MODEL = "gemma-3-270m"  # the name `vigil rag llm-server` gives the local model


class RagSettings(BaseSettings):
    """Where Qdrant, the embedding model and the LLM are, and how much to retrieve."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_RAG_", extra="ignore")

    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL (production); None uses local mode."
    )
    qdrant_path: Path = Field(
        default=Path("data/qdrant"), description="On-disk Qdrant local-mode folder."
    )
    qdrant_api_key: SecretStr | None = None
    qdrant_timeout_s: float = Field(default=5.0, gt=0)
    collection: str = Field(default="vigil_knowledge", min_length=1)
    embedding_model_path: Path | None = Field(
        default=None, description="sentence-transformers model folder; None: the packaged one."
    )
    embedding_batch_size: int = Field(default=64, ge=1)
    llm_base_url: str = Field(
        default=f"http://127.0.0.1:{LLM_SERVER_PORT}/v1",
        description="OpenAI-compatible API (vLLM, llama.cpp).",
    )
    llm_model: str = Field(default=LOCAL_LLM_MODEL, description="Model name sent to the LLM API.")
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(default=30.0, gt=0)
    llm_max_retries: int = Field(default=1, ge=0)
    llm_deadline_s: float = Field(
        default=ANSWER_DEADLINE_SECONDS,
        gt=0,
        description="Every LLM attempt of one /explain ends within this; then it is degraded.",
    )
    llm_max_tokens: int = Field(default=384, ge=16)
    llm_temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    top_k_logs: int = Field(default=5, ge=0, le=50)
    top_k_runbooks: int = Field(default=3, ge=0, le=20)
    log_window_hours: float = Field(
        default=24.0, gt=0, description="Logs retrieved lie within this many hours of the window."
    )
    runbooks_path: Path = Field(default=RUNBOOKS_PATH)
    api_key: SecretStr | None = Field(
        default=None,
        description="When set, /explain requires it (X-API-Key or Authorization: Bearer).",
    )
    explain_concurrency: int = Field(
        default=8,
        ge=1,
        description="Explanations worked on at once (threads); more wait, probes never do.",
    )
    readiness_timeout_s: float = Field(
        default=0.8,
        gt=0,
        description="/readyz waits this long for each check (under Kubernetes' 1 s default).",
    )
    max_request_bytes: int = Field(default=256 * 1024, ge=1024)


@lru_cache
def get_rag_settings() -> RagSettings:
    """The process-wide settings, built on first use (never at import)."""
    return RagSettings()
