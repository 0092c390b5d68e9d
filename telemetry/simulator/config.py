"""What the fleet simulator simulates: the fleet's size and mix, the time span, the seed."""

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.telemetry import SOURCES

DEFAULT_START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday, 00:00 UTC
DEFAULT_SOURCE_WEIGHTS = {"ec2": 0.3, "app": 0.3, "rds": 0.15, "lambda": 0.15, "alb": 0.1}
# Independent random streams: np.random.default_rng([seed, stream, ...]).
RNG_PLAN, RNG_INITIAL_NOISE, RNG_METRICS, RNG_LOGS = 0, 1, 2, 3


class SimulationConfig(BaseModel):
    """What fleet to simulate, for how long, and how often things go wrong."""

    model_config = ConfigDict(extra="forbid")

    instances: int = Field(default=50, ge=1, description="number of instances in the fleet")
    start: datetime = Field(
        default=DEFAULT_START, description="first minute (UTC; a naive time is taken as UTC)"
    )
    duration: timedelta = Field(default=timedelta(days=3), description="whole minutes, > 0")
    seed: int = Field(default=0, ge=0, description="same seed, same telemetry")
    incident_rate: float = Field(
        default=0.05, ge=0.0, lt=1.0, description="share of instance-minutes inside an incident"
    )
    logs_per_minute: float = Field(
        default=4.0, ge=0.0, description="average log lines per instance-minute in normal load"
    )
    incident_log_share: float = Field(
        default=1.0,
        ge=0.0,
        description="multiplier of the share of an instance's log lines its incident writes "
        "(capped at all of them); 0 leaves incidents without a log signature",
    )
    source_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_SOURCE_WEIGHTS),
        description="relative share of each source (ec2, rds, lambda, alb, app) in the fleet",
    )

    @field_validator("start")
    @classmethod
    def _start_on_whole_minute(cls, start: datetime) -> datetime:
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start.astimezone(UTC)
        if start.second or start.microsecond:
            raise ValueError(f"start must fall on a whole minute, got {start.isoformat()}")
        return start

    @field_validator("duration")
    @classmethod
    def _positive_whole_minutes(cls, duration: timedelta) -> timedelta:
        if duration <= timedelta(0):
            raise ValueError(f"duration must be positive, got {duration}")
        if duration % timedelta(minutes=1):
            raise ValueError(f"duration must be a whole number of minutes, got {duration}")
        return duration

    @field_validator("source_weights")
    @classmethod
    def _known_sources(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown sources {unknown}; known sources are {list(SOURCES)}")
        negative = sorted(source for source, weight in weights.items() if weight < 0)
        if negative:
            raise ValueError(f"source weights must be >= 0, negative for {negative}")
        if sum(weights.values()) <= 0:
            raise ValueError("at least one source weight must be positive")
        return weights

    @property
    def minutes(self) -> int:
        return int(self.duration / timedelta(minutes=1))

    @property
    def end(self) -> datetime:
        """The first minute after the simulation."""
        return self.start + self.duration
