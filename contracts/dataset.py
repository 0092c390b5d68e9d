"""What a store holds: written once at its root by whoever fills it, read by the feature job."""

import json

from pydantic import BaseModel, ConfigDict, Field

from contracts.layout import DATASET_INFO_PATH
from contracts.store import ObjectStore
from contracts.telemetry import FLEET_METRICS


class LogTemplateCatalogue(BaseModel):
    """The log templates a dataset's log features name, recorded once (by the feature job).

    ``top[i]`` is the template whose window count is the feature ``log_template_{i+1}_sum_15``
    (``contracts.features``): the feature columns stay the same for every dataset, and what each
    slot counts is fixed here, so a model's signature keeps its meaning. A template outside
    ``common`` (new since, or below ``contracts.features.RARE_TEMPLATE_SHARE`` of the events
    counted) is rare.
    """

    model_config = ConfigDict(extra="forbid")

    events: int = Field(ge=0, description="templated log events the catalogue was counted on")
    top: list[int] = Field(description="the most frequent template ids, most frequent first")
    common: list[int] = Field(description="template ids that are not rare, ascending")


class DatasetInfo(BaseModel):
    """The metric list and sampling step of the telemetry in a store, and its log templates."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="fleet (simulated or exported), smd, asd or nab")
    step_seconds: int = Field(default=60, gt=0, description="sampling step of the metrics")
    metrics: list[str] = Field(default_factory=lambda: list(FLEET_METRICS), min_length=1)
    log_templates: LogTemplateCatalogue | None = Field(
        default=None,
        description="the templates the log features name; None until the feature job first "
        "sees templated logs (a dataset without logs keeps None: its log features are zeros)",
    )


def read_dataset_info(store: ObjectStore) -> DatasetInfo:
    """The store's DatasetInfo; a store without one holds fleet telemetry at 1-minute steps."""
    if not store.exists(DATASET_INFO_PATH):
        return DatasetInfo(name="fleet")
    return DatasetInfo.model_validate(json.loads(store.read_bytes(DATASET_INFO_PATH)))


def write_dataset_info(store: ObjectStore, info: DatasetInfo) -> None:
    store.write_bytes(DATASET_INFO_PATH, info.model_dump_json(indent=2).encode())
