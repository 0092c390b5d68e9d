"""Log history from the raw store, as chunks: log templates per instance-window, and incidents.

Every log row of the raw store is read as a record: a JSON row keeps its level and message; a
row kept whole (``parse_error``: a plain-text, syslog, access-log or other line the exporter
could not split) is parsed by ``telemetry.logs.detection.LogParser``, which strips its header
and finds its level when the line has one. Records at WARN and above, and records whose line
names no level at all (their severity is unknown, and an outage often writes exactly such
lines), are mined into templates (``telemetry.logs.templates``, one miner per raw file, so a
file's records get the templates the whole file teaches) and grouped: one chunk per
(template, instance, ``LOG_WINDOW``), with the count, the level and the first example lines
as written.

A chunk's text, the one embedded and shown, is ``LEVEL [source] instance: line`` with the
template's first line on that instance in the file: it reads like the log, so it embeds like
the lines an anomaly comes with, and it is the same for every window of the template, so the
indexer embeds it once.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from rag.chunking import LOG_CHUNK_CHARS, Chunk
from telemetry.logs.raw_rows import raw_log_records
from telemetry.logs.templates import LogTemplateMiner, mine_records

INDEXED_LEVELS = ("WARN", "ERROR", "CRITICAL")  # and records without a level
# The scorer's default window (serving.scorer.settings.window_seconds): one point per
# template and instance-window.
LOG_WINDOW = timedelta(minutes=5)
MAX_EXAMPLES = 3
EXAMPLE_CHARS = 300
RAW_LOG_COLUMNS = ("timestamp", "instance_id", "source", "kind", "level", "message", "parse_error")
_SEVERITY = {None: 0, "WARN": 1, "ERROR": 2, "CRITICAL": 3}

# (start, end, incident_type) per instance
IncidentWindows = dict[str, list[tuple[datetime, datetime, str]]]


def incident_windows(incidents: pa.Table) -> IncidentWindows:
    """Each instance's incident windows, to tag log lines with the incident they fall in."""
    windows: IncidentWindows = defaultdict(list)
    for row in incidents.select(["instance_id", "start", "end", "incident_type"]).to_pylist():
        windows[row["instance_id"]].append((row["start"], row["end"], row["incident_type"]))
    return dict(windows)


@dataclass
class _Group:
    """The records of one template on one instance in one window."""

    service: str
    template: str
    first: datetime
    level: str | None = None
    count: int = 0
    examples: list[str] = field(default_factory=list)
    incident_type: str | None = None


def log_chunks(
    raw: pa.Table, key: str, windows: IncidentWindows, window: timedelta = LOG_WINDOW
) -> list[Chunk]:
    """One chunk per (template, instance, window) of the indexed records in ``raw``.

    Args:
        raw: A raw partition (``contracts.telemetry.RAW_SCHEMA``; metric rows are ignored).
        key: The partition's key, kept as each chunk's ``document``.
        windows: Incident windows per instance; a chunk is tagged with the incident one of its
            records falls in.
        window: Length of the windows, aligned on the epoch.

    Returns:
        The chunks, in order of their first record.
    """
    logs = raw.filter(pc.equal(raw["kind"], "log")).select(list(RAW_LOG_COLUMNS))
    rows = logs.sort_by("timestamp").to_pylist()
    kept = [
        (row, record)
        for row, record in zip(rows, raw_log_records(rows), strict=True)
        if (record.level is None or record.level in INDEXED_LEVELS) and record.message.strip()
    ]
    mined = mine_records([record for _, record in kept], LogTemplateMiner())
    seconds = window.total_seconds()
    groups: dict[tuple[str, int, int], _Group] = {}
    representative: dict[tuple[str, int], str] = {}  # first line of a template per instance
    for (row, _), item in zip(kept, mined, strict=True):
        record, instance, at = item.record, row["instance_id"], row["timestamp"]
        slot = int(at.timestamp() // seconds)
        template_id = item.template.template_id
        group = groups.get((instance, template_id, slot))
        if group is None:
            group = groups[(instance, template_id, slot)] = _Group(
                row["source"], item.template.text, at
            )
        group.count += 1
        if _SEVERITY.get(record.level, 0) >= _SEVERITY.get(group.level, 0):
            group.level = record.level
        # Examples are the lines as written (a header names host and program); the text is
        # the message alone, what the template was mined from.
        written = str(row["message"]).partition("\n")[0].strip()[:EXAMPLE_CHARS]
        if len(group.examples) < MAX_EXAMPLES and written not in group.examples:
            group.examples.append(written)
        group.incident_type = group.incident_type or _incident_at(windows, instance, at)
        representative.setdefault(
            (instance, template_id), record.first_line.strip()[:EXAMPLE_CHARS]
        )
    chunks = []
    for (instance, template_id, slot), group in groups.items():
        start = datetime.fromtimestamp(slot * seconds, UTC)
        text = (
            f"{group.level or 'LOG'} [{group.service}] {instance}: "
            f"{representative[(instance, template_id)]}"
        )
        chunks.append(
            Chunk(
                text=text[:LOG_CHUNK_CHARS],
                payload={
                    "kind": "log",
                    "document": key,
                    "instance_id": instance,
                    "service": group.service,
                    "level": group.level,
                    "template": group.template[:LOG_CHUNK_CHARS],
                    "count": group.count,
                    "examples": group.examples,
                    "window_start": start.isoformat(),
                    "window_end": (start + window).isoformat(),
                    "timestamp": group.first.isoformat(),
                    "ts": start.timestamp(),
                    "incident_type": group.incident_type,
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
