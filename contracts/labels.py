"""Ground truth written beside the data by the simulator and the dataset importers."""

import pyarrow as pa

INCIDENT_TYPES = (
    "error_spike",
    "latency_degradation",
    "security_threat",
    "resource_exhaustion",
    "service_outage",
    "data_anomaly",
)

# One row per incident: the rows of [start, end] (inclusive) on that instance are anomalous.
# ``incident_type`` is one of INCIDENT_TYPES for simulated fleets and the published type (or
# "unknown") for real datasets; ``metrics`` lists the metrics that explain it when known.
INCIDENTS_SCHEMA = pa.schema(
    [
        pa.field("instance_id", pa.string(), nullable=False),
        pa.field("start", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("end", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("incident_type", pa.string(), nullable=False),
        pa.field("metrics", pa.list_(pa.string())),
    ]
)

# One row per labelled (instance, timestamp). ``split`` is "train" or "test" for datasets that
# publish one; ``label`` is null where the dataset gives no label (e.g. SMD's train split).
POINT_LABELS_SCHEMA = pa.schema(
    [
        pa.field("instance_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("label", pa.int8()),
        pa.field("split", pa.string(), nullable=False),
    ]
)
