"""Settings of ``vigil logs watch`` (env prefix ``VIGIL_LOGS_WATCH_``)."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogWatchSettings(BaseSettings):
    """Windows, anomaly thresholds, the explainer and the Kinesis consumer of the watcher.

    The explainer's API key has no default: it comes from ``VIGIL_LOGS_WATCH_EXPLAIN_API_KEY``
    (the chart mounts the one Secret of ``contracts.auth``) and is never logged.
    """

    model_config = SettingsConfigDict(env_prefix="VIGIL_LOGS_WATCH_", extra="ignore")

    window_s: float = Field(default=60.0, gt=0, description="Seconds per window.")
    poll_interval_s: float = Field(
        default=0.2, gt=0, description="Seconds between two reads of an idle source."
    )
    learning_windows: int = Field(
        default=1,
        ge=0,
        description="Windows a watcher that starts without any template only learns in: "
        "every template is new then, and none is reported.",
    )
    spike_z: float = Field(
        default=3.0, gt=0, description="Standard deviations above its mean for a spike."
    )
    spike_ratio: float = Field(
        default=3.0, ge=1.0, description="A spike is also at least this many times its mean."
    )
    spike_min_count: int = Field(default=10, ge=1, description="Fewest records for a spike.")
    spike_min_windows: int = Field(
        default=3, ge=1, description="Windows of a template's history before it can spike."
    )
    burst_z: float = Field(default=3.0, gt=0, description="As spike_z, for error records.")
    burst_ratio: float = Field(default=3.0, ge=1.0, description="As spike_ratio, for errors.")
    burst_min_count: int = Field(
        default=5, ge=1, description="Fewest ERROR/CRITICAL records in a window for a burst."
    )
    half_life_windows: float = Field(
        default=30.0, gt=0, description="Windows after which history weighs half."
    )
    examples: int = Field(default=3, ge=1, le=20, description="Example lines per template.")
    example_chars: int = Field(default=300, ge=40, description="An example line is cut here.")
    state_save_interval_s: float = Field(
        default=60.0, ge=0, description="The template state is saved at most this often."
    )
    metrics_top_templates: int = Field(
        default=10,
        ge=0,
        description="Templates of the last window exported with their text as a label: "
        "the label set stays bounded by this many series at a time.",
    )
    explain_url: str | None = Field(
        default=None, description="Base URL of the explainer; None: windows are not explained."
    )
    explain_api_key: SecretStr | None = None
    explain_timeout_s: float = Field(default=60.0, gt=0, description="Per explanation.")
    explain_min_severity: Literal["critical", "high", "medium", "low"] = Field(
        default="high", description="Windows with an anomaly at least this severe are explained."
    )
    kinesis_checkpoint_uri: str | None = Field(
        default=None,
        description="Where shard leases and checkpoints live (a folder or s3://bucket/prefix); "
        "None: the object store (VIGIL_STORE_URI) under logs-watch/.",
    )
    kinesis_initial_position: Literal["LATEST", "TRIM_HORIZON"] = Field(
        default="LATEST",
        description="Where a shard without a checkpoint is read from.",
    )
    kinesis_lease_ttl_s: float = Field(
        default=30.0, gt=0, description="A shard lease not renewed for this long is free."
    )
    kinesis_max_shards: int = Field(
        default=0, ge=0, description="Shards one watcher holds at most (0: all it can take)."
    )
    kinesis_records_per_call: int = Field(default=1000, ge=1, le=10000)
    kinesis_shard_refresh_s: float = Field(
        default=10.0, gt=0, description="Seconds between two looks for shards to take."
    )


@lru_cache
def get_log_watch_settings() -> LogWatchSettings:
    """The process-wide settings, built on first use (never at import)."""
    return LogWatchSettings()
