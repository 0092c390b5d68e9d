"""Settings of the online scorer (env prefix ``VIGIL_SCORER_``); Helm values map onto these.

Where the data lives (the object store) comes from ``contracts.settings`` (``VIGIL_``), shared
with every other part.
"""

from functools import lru_cache
from typing import Literal

from pydantic import AwareDatetime, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.explanation import ANSWER_DEADLINE_SECONDS
from contracts.ports import MLFLOW_PORT, SCORER_PORT, TRITON_GRPC_PORT
from contracts.serving import AB_MODEL, ASSIGNMENT_PATH


class ScorerSettings(BaseSettings):
    """What the scorer scores, against which endpoint, and where it sends explanations."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_SCORER_", extra="ignore")

    window_seconds: int = Field(default=300, gt=0, description="Length of one scoring window.")
    catch_up_windows: int = Field(
        default=12,
        ge=0,
        description="On start, windows missed while the scorer was down are scored if the last "
        "scored one is at most this many windows back (12 × 5 min: an hour).",
    )
    features_source: Literal["features", "raw"] = Field(
        default="features",
        description="Read the feature job's rows (processed-logs/) or compute them from "
        "raw-logs/ with the same feature code.",
    )
    tracking_uri: str = Field(
        default=f"http://127.0.0.1:{MLFLOW_PORT}",
        description="MLflow: alias holders, thresholds, reference distributions, the champion.",
    )
    inference_url: str = Field(
        default=f"127.0.0.1:{TRITON_GRPC_PORT}",
        description="host:port of the inference endpoint: the A/B router's listener for "
        "inference_protocol, or Triton itself when ab_router_url is None.",
    )
    inference_protocol: Literal["grpc", "http"] = Field(default="grpc")
    ab_router_url: str | None = Field(
        default=None,
        description="The A/B router's HTTP base URL. Set: the router picks each instance's "
        "arm (over HTTP requests name router_model; over gRPC the arm's model comes from "
        f"its {ASSIGNMENT_PATH}). None: the arm is chosen here by champion_weight.",
    )
    # The model name the A/B router answers for; it routes each request to one arm.
    router_model: str = Field(default=AB_MODEL, min_length=1)
    champion_weight: int = Field(
        default=70,
        ge=0,
        le=100,
        description="Percent of instances scored by the champion when the arm is chosen here "
        "(the Helm values' abTest.championWeight).",
    )
    inference_timeout_s: float = Field(default=10.0, gt=0)
    concurrency: int = Field(default=4, ge=1, description="Inference requests in flight.")
    anomaly_rate_seconds: int = Field(
        default=3600, gt=0, description="Span of the rolling anomaly rate and drift sample."
    )
    accuracy_window: int = Field(
        default=1000, ge=1, description="Latest feedback labels model_accuracy is computed over."
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="The key POST /feedback and /feedback/batch require (X-API-Key or "
        "Authorization: Bearer; contracts.auth); the chart sets it from its Secret. None: "
        "feedback is open, for a loopback-only local stack (a warning is logged at start).",
    )
    window_max_attempts: int = Field(
        default=3,
        ge=1,
        description="Attempts at a window failing with an error of its own (a corrupt or "
        "mismatched feature file) before it is skipped, recorded under scorer/skipped/ and "
        "counted in scorer_windows_skipped_total; an unreachable inference endpoint or object "
        "store is retried without limit (skipping would drop windows the outage delayed).",
    )
    window_retry_seconds: float = Field(
        default=5.0, gt=0, description="Wait between attempts at a window that failed."
    )
    alias_check_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How often the scoring loop reads MLflow's serving aliases; when one moved, "
        "the alias holders' versions, thresholds, detector, drift reference and explainer are "
        "reloaded in the background and swapped in between two windows. 0: read at start only.",
    )
    explain_url: str | None = Field(
        default=None, description="Explanation service base URL; None turns explanations off."
    )
    explain_api_key: SecretStr | None = Field(default=None, description="Sent as X-API-Key.")
    explain_threshold: float = Field(default=0.85, ge=0.0, le=1.0)
    explain_queue_size: int = Field(default=100, ge=1)
    # The explainer's own deadline, plus its retrieval and the requests ahead of this one.
    explain_timeout_s: float = Field(default=ANSWER_DEADLINE_SECONDS + 15.0, gt=0)
    explain_top_features: int = Field(default=10, ge=1, le=50)
    explain_log_lines: int = Field(default=50, ge=0, le=200)
    replay_start: AwareDatetime | None = Field(
        default=None, description="Replay windows from here at startup (a backfill or the demo)."
    )
    replay_end: AwareDatetime | None = Field(default=None, description="End of the replay.")
    replay_pace_seconds: float = Field(
        default=0.0, ge=0.0, description="Wall-clock seconds between replayed windows."
    )
    host: str = Field(default="127.0.0.1", description="Address /metrics and /feedback bind.")
    port: int = Field(default=SCORER_PORT, ge=1, le=65535)


@lru_cache
def get_scorer_settings() -> ScorerSettings:
    """The process-wide settings, built on first use (never at import)."""
    return ScorerSettings()
