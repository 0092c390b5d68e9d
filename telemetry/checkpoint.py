"""The exporter's checkpoint, stored next to the data: how far each stream is safely exported.

A stream is one log group (``logs:<group>``) or one metric namespace (``metrics:<namespace>``).
Its high-water mark means "every event before this instant is in the raw partitions"; it only
ever moves forward, and only once the partition holding the window is in place. The failures
of the latest run are kept beside the marks so that an operator (or an alert) can see them.

Only the exporter holding the store's export lease (``contracts.layout.EXPORT_LEASE_PATH``,
taken by ``telemetry.cloudwatch_export.export``) reads and writes it, so two exporters never replace
each other's marks.
"""

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from contracts.layout import CHECKPOINT_PATH
from contracts.store import ObjectStore


class StreamFailure(BaseModel):
    """A stream window the exporter could not fetch; the next run fetches it again."""

    model_config = ConfigDict(extra="forbid")

    stream: str = Field(description="logs:<log group> or metrics:<namespace>")
    window_start: AwareDatetime
    window_end: AwareDatetime
    error: str


class ExportCheckpoint(BaseModel):
    """High-water mark per stream plus the failures of the latest run."""

    model_config = ConfigDict(extra="forbid")

    high_water_marks: dict[str, AwareDatetime] = Field(default_factory=dict)
    failures: list[StreamFailure] = Field(default_factory=list)


def read_checkpoint(store: ObjectStore) -> ExportCheckpoint:
    """The store's checkpoint; an empty one when the exporter never ran against it.

    Raises:
        ValueError: the checkpoint file exists but is not a valid checkpoint.
    """
    if not store.exists(CHECKPOINT_PATH):
        return ExportCheckpoint()
    try:
        return ExportCheckpoint.model_validate_json(store.read_bytes(CHECKPOINT_PATH))
    except ValidationError as error:
        raise ValueError(
            f"{store.uri}/{CHECKPOINT_PATH} is not a valid exporter checkpoint: {error}"
        ) from error


def write_checkpoint(store: ObjectStore, checkpoint: ExportCheckpoint) -> None:
    """Replace the stored checkpoint atomically."""
    store.write_bytes(CHECKPOINT_PATH, checkpoint.model_dump_json(indent=2).encode())
