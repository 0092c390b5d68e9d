"""Log history from the raw store: WARN/ERROR/CRITICAL lines and past incidents, as chunks."""

from collections import defaultdict
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from rag.chunking import LOG_CHUNK_CHARS, Chunk

INDEXED_LEVELS = ("WARN", "ERROR", "CRITICAL")

# (start, end, incident_type) per instance
IncidentWindows = dict[str, list[tuple[datetime, datetime, str]]]


def incident_windows(incidents: pa.Table) -> IncidentWindows:
    """Each instance's incident windows, to tag log lines with the incident they fall in."""
    windows: IncidentWindows = defaultdict(list)
    for row in incidents.select(["instance_id", "start", "end", "incident_type"]).to_pylist():
        windows[row["instance_id"]].append((row["start"], row["end"], row["incident_type"]))
    return dict(windows)


def log_chunks(raw: pa.Table, key: str, windows: IncidentWindows) -> list[Chunk]:
    """One chunk per distinct (instance, level, message) of the indexed levels in ``raw``.

    Repeats of a line on one instance add nothing to retrieval; the first occurrence is kept.
    """
    logs = raw.filter(
        pc.and_(pc.equal(raw["kind"], "log"), pc.is_in(raw["level"], pa.array(INDEXED_LEVELS)))
    )
    columns = ["timestamp", "instance_id", "source", "level", "message"]
    seen: set[tuple[str, str, str]] = set()
    chunks = []
    for row in logs.select(columns).to_pylist():
        message = (row["message"] or "").strip()
        identity = (row["instance_id"], row["level"], message)
        if not message or identity in seen:
            continue
        seen.add(identity)
        timestamp: datetime = row["timestamp"]
        text = f"{row['level']} [{row['source']}] {row['instance_id']}: {message}"
        chunks.append(
            Chunk(
                text=text[:LOG_CHUNK_CHARS],
                payload={
                    "kind": "log",
                    "document": key,
                    "instance_id": row["instance_id"],
                    "service": row["source"],
                    "level": row["level"],
                    "timestamp": timestamp.isoformat(),
                    "ts": timestamp.timestamp(),
                    "incident_type": _incident_at(windows, row["instance_id"], timestamp),
                },
            )
        )
    return chunks


def incident_chunks(incidents: pa.Table, key: str) -> list[Chunk]:
    """One chunk per past incident: where, when, what type and which metrics explained it."""
    chunks = []
    for row in incidents.to_pylist():
        metrics = ", ".join(row.get("metrics") or []) or "not recorded"
        label = row["incident_type"].replace("_", " ")
        text = (
            f"Past incident: {label} on {row['instance_id']} from {row['start']:%Y-%m-%d %H:%M} "
            f"to {row['end']:%Y-%m-%d %H:%M} UTC; metrics involved: {metrics}"
        )
        chunks.append(
            Chunk(
                text=text[:LOG_CHUNK_CHARS],
                payload={
                    "kind": "incident",
                    "document": key,
                    "instance_id": row["instance_id"],
                    "timestamp": row["start"].isoformat(),
                    "ts": row["start"].timestamp(),
                    "incident_type": row["incident_type"],
                },
            )
        )
    return chunks


def _incident_at(windows: IncidentWindows, instance_id: str, at: datetime) -> str | None:
    for start, end, incident_type in windows.get(instance_id, ()):
        if start <= at <= end:
            return incident_type
    return None
