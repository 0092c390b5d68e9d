"""How an export run is set up and what it reports: its config, summary, error and clients."""

from datetime import UTC, datetime, timedelta
from typing import Literal

import boto3
import botocore.session
from botocore.client import BaseClient
from botocore.config import Config
from botocore.utils import parse_timestamp
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.settings import Settings
from telemetry.checkpoint import StreamFailure


class ExportConfig(BaseModel):
    """How far back a run looks, how big its pages are and how hard it retries."""

    model_config = ConfigDict(extra="forbid")

    settle_lag: timedelta = Field(
        default=timedelta(minutes=5),
        ge=timedelta(0),
        description="The default end is now minus this: CloudWatch takes late events for a while.",
    )
    initial_lookback: timedelta = Field(
        default=timedelta(hours=1),
        gt=timedelta(0),
        description="Where a stream without a checkpoint starts when no start is given.",
    )
    log_page_size: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="filter_log_events limit; None lets CloudWatch fill pages (10,000 or 1 MB).",
    )
    metric_queries_per_call: int = Field(
        default=500, ge=1, le=500, description="MetricDataQueries per get_metric_data call."
    )
    max_attempts: int = Field(
        default=8, ge=1, description="Attempts per API call, the first included (throttling, 5xx)."
    )
    retry_mode: Literal["standard", "adaptive"] = "standard"
    lease_ttl: timedelta = Field(
        default=timedelta(minutes=10),
        gt=timedelta(0),
        description="How long the export lease outlives its last renewal: a crashed "
        "exporter blocks the others this long.",
    )
    lease_wait: timedelta = Field(
        default=timedelta(minutes=5),
        ge=timedelta(0),
        description="How long a run waits for another exporter to finish before giving up.",
    )


class ExportSummary(BaseModel):
    """What one run did."""

    model_config = ConfigDict(extra="forbid")

    end: AwareDatetime
    metric_rows: int = 0
    log_rows: int = 0
    malformed_log_rows: int = Field(
        default=0, description="log rows kept with parse_error (no level could be read)"
    )
    log_templates: int = Field(default=0, description="templates the store's miner knows")
    duplicate_rows: int = Field(default=0, description="fetched rows the partition already held")
    partitions_written: list[str] = Field(default_factory=list)
    pages: int = Field(default=0, description="API responses read")
    retries: int = Field(default=0, description="API calls retried after throttling or 5xx")
    failures: list[StreamFailure] = Field(default_factory=list)


class ExportError(RuntimeError):
    """Some stream windows could not be fetched; they stay before the checkpoint."""

    def __init__(self, summary: ExportSummary) -> None:
        self.summary = summary
        windows = "; ".join(
            f"{f.stream} [{f.window_start:%Y-%m-%dT%H:%M:%SZ}, {f.window_end:%Y-%m-%dT%H:%M:%SZ})"
            f": {f.error}"
            for f in summary.failures
        )
        super().__init__(
            f"CloudWatch export failed for {len(summary.failures)} stream window(s), "
            f"left for the next run to retry: {windows}"
        )


def make_cloudwatch_clients(
    settings: Settings, config: ExportConfig | None = None
) -> tuple[BaseClient, BaseClient]:
    """boto3 clients for CloudWatch Logs and CloudWatch metrics that retry throttling and 5xx.

    Args:
        settings: region and endpoint override (an emulator in tests, None in AWS).
        config: retry mode and attempts; the defaults when None.

    Returns:
        The ``logs`` client and the ``cloudwatch`` client.
    """
    config = config or ExportConfig()
    boto_config = Config(
        region_name=settings.aws_region,
        retries={"total_max_attempts": config.max_attempts, "mode": config.retry_mode},
    )
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_parse_timestamp_utc
    )
    session = boto3.session.Session(botocore_session=core)
    return (
        session.client("logs", endpoint_url=settings.aws_endpoint_url, config=boto_config),
        session.client("cloudwatch", endpoint_url=settings.aws_endpoint_url, config=boto_config),
    )


def _parse_timestamp_utc(value: str | float) -> datetime:
    """botocore's timestamp parser, but in UTC: its default attaches a fresh tzlocal to every
    timestamp, and converting those costs more than the rest of a metric page's handling."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    parsed: datetime = parse_timestamp(value)
    return parsed.astimezone(UTC)
