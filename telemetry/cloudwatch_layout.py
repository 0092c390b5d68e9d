"""How the fleet appears in CloudWatch: shared by the exporter and the simulator's push.

- Logs: one log group per source; one log stream per instance (stream name = instance id);
  Vigil's own services write each event's message as a JSON object ``{"level": ...,
  "message": ..., "metadata": {...}}``; any other text is parsed by the log parser
  (``telemetry.logs.events``), and only an event whose level cannot be read is flagged
  ``parse_error``. Every log event is stored with its template id.
- Metrics: one namespace per source, dimension ``InstanceId``, 1-minute period.
"""

from pydantic import BaseModel, ConfigDict, Field

from contracts.telemetry import FLEET_METRICS


class CloudWatchLayout(BaseModel):
    """Log groups and metric namespaces to export, each mapped to its telemetry source."""

    model_config = ConfigDict(extra="forbid")

    log_groups: dict[str, str] = Field(
        default_factory=lambda: {
            "/aws/ec2/system": "ec2",
            "/aws/rds/postgresql": "rds",
            "/aws/lambda/functions": "lambda",
            "/aws/alb/access": "alb",
            "/application/logs": "app",
        },
        description="log group name -> source",
    )
    metric_namespaces: dict[str, str] = Field(
        default_factory=lambda: {
            "AWS/EC2": "ec2",
            "AWS/RDS": "rds",
            "AWS/Lambda": "lambda",
            "AWS/ApplicationELB": "alb",
            "Vigil/App": "app",
        },
        description="metric namespace -> source",
    )
    metric_names: list[str] = Field(default_factory=lambda: list(FLEET_METRICS), min_length=1)
    dimension: str = "InstanceId"
    period_seconds: int = Field(default=60, gt=0)

    def log_group_for(self, source: str) -> str:
        return next(group for group, src in self.log_groups.items() if src == source)

    def namespace_for(self, source: str) -> str:
        return next(ns for ns, src in self.metric_namespaces.items() if src == source)
