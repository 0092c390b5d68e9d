"""What a store holds: written once at its root by whoever fills it, read by the feature job."""

import json

from pydantic import BaseModel, ConfigDict, Field

from contracts.layout import DATASET_INFO_PATH
from contracts.store import ObjectStore
from contracts.telemetry import FLEET_METRICS


class DatasetInfo(BaseModel):
    """The metric list and sampling step of the telemetry in a store."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="fleet (simulated or exported), smd, asd or nab")
    step_seconds: int = Field(default=60, gt=0, description="sampling step of the metrics")
    metrics: list[str] = Field(default_factory=lambda: list(FLEET_METRICS), min_length=1)


def read_dataset_info(store: ObjectStore) -> DatasetInfo:
    """The store's DatasetInfo; a store without one holds fleet telemetry at 1-minute steps."""
    if not store.exists(DATASET_INFO_PATH):
        return DatasetInfo(name="fleet")
    return DatasetInfo.model_validate(json.loads(store.read_bytes(DATASET_INFO_PATH)))


def write_dataset_info(store: ObjectStore, info: DatasetInfo) -> None:
    store.write_bytes(DATASET_INFO_PATH, info.model_dump_json(indent=2).encode())
