"""The log evidence the scorer's explain trigger sends: the window's new, spiking and
error-burst templates, read from the real raw store layout, mined and detected by the real
template miner and log anomaly detector (no network)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from contracts.explanation import ExplainRequest
from contracts.layout import raw_partition_path
from contracts.store import ObjectStore
from contracts.telemetry import RAW_SCHEMA
from serving.scorer.explain_trigger import (
    format_log_lines,
    log_evidence,
    read_log_rows,
)

INSTANCE = "i-0web"
WINDOW_START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
WINDOW_END = WINDOW_START + timedelta(minutes=5)
SINCE = WINDOW_START - timedelta(hours=2)

# (instance, level, message, parse_error, seconds after SINCE)
Row = tuple[str, str | None, str, bool, float]


def _history() -> list[Row]:
    """Two quiet hours: a heartbeat every minute and a slow-request warning every 5 minutes."""
    rows: list[Row] = []
    for minute in range(120):
        rows.append((INSTANCE, "INFO", f"heartbeat ok seq={minute}", False, minute * 60.0))
        if minute % 5 == 0:
            rows.append(
                (
                    INSTANCE,
                    "WARN",
                    f"slow request GET /api/cart took {900 + minute}ms",
                    False,
                    60.0 * minute + 1,
                )
            )
    return rows


def _window() -> list[Row]:
    """The anomaly's 5 minutes: slow requests spike, a new error appears, and the syslog
    daemon writes plain lines (no JSON, no level) about a new problem."""
    base = 7200.0
    rows: list[Row] = []
    for second in range(0, 300, 6):  # 50 slow requests in 5 minutes (usually 1)
        rows.append(
            (
                INSTANCE,
                "WARN",
                f"slow request GET /api/cart took {3000 + second}ms",
                False,
                base + second,
            )
        )
    for second in (30.0, 90.0, 150.0):
        rows.append(
            (
                INSTANCE,
                "ERROR",
                f"connection pool exhausted for orders-db after {second:.0f}s",
                False,
                base + second,
            )
        )
    for second in (40.0, 100.0):
        at = SINCE + timedelta(seconds=base + second)
        pid = 4000 + int(second)
        line = f"{at:%b %e %H:%M:%S} web01 kernel: Out of memory: Killed process {pid} (java)"
        rows.append((INSTANCE, None, line, True, base + second))
    rows.append(("i-0other", "CRITICAL", "disk on fire", False, base + 10))  # another instance
    rows.append((INSTANCE, "INFO", "brand new info notice", False, base + 20))  # INFO: no alert
    return rows


def _write(store: ObjectStore, rows: list[Row]) -> None:
    by_hour: dict[datetime, list[Row]] = {}
    for row in rows:
        at = SINCE + timedelta(seconds=row[4])
        by_hour.setdefault(at.replace(minute=0, second=0, microsecond=0), []).append(row)
    for hour, hour_rows in by_hour.items():
        n = len(hour_rows)
        table = pa.Table.from_pydict(
            {
                "timestamp": [SINCE + timedelta(seconds=r[4]) for r in hour_rows],
                "instance_id": [r[0] for r in hour_rows],
                "source": ["app"] * n,
                "kind": ["log"] * n,
                "name": [None] * n,
                "value": [None] * n,
                "level": [r[1] for r in hour_rows],
                "message": [r[2] for r in hour_rows],
                "metadata": [None] * n,
                "event_id": [f"{hour:%H}-{i}" for i in range(n)],
                "parse_error": [r[3] for r in hour_rows],
            },
            schema=RAW_SCHEMA,
        )
        store.write_table(raw_partition_path(hour), table)


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    _write(store, _history() + _window())
    return store


def test_the_window_new_spiking_and_plain_templates_are_the_evidence(store: ObjectStore) -> None:
    rows = read_log_rows(store, INSTANCE, SINCE, WINDOW_END)
    assert {row["instance_id"] for row in rows} == {INSTANCE}
    assert [row["timestamp"] for row in rows] == sorted(row["timestamp"] for row in rows)

    evidence = log_evidence(rows, SINCE, WINDOW_START, WINDOW_END, limit=10)
    by_text = {item.template: item for item in evidence}
    error = next(item for item in evidence if "connection pool exhausted" in item.template)
    assert (error.kind, error.level, error.count, error.baseline) == ("novel", "ERROR", 3, 0.0)
    assert error.examples[0] == "connection pool exhausted for orders-db after 30s"
    assert len(error.examples) == 3

    slow = next(item for item in evidence if "slow request" in item.template)
    assert (slow.kind, slow.level, slow.count) == ("spike", "WARN", 50)
    assert slow.baseline == pytest.approx(1.0)  # 24 in two hours: one per 5 minutes
    assert len(slow.examples) == 3  # bounded, distinct lines

    # The syslog lines name no level: parsed (header stripped before mining), kept, and new.
    plain = next(item for item in evidence if "Out of memory" in item.template)
    assert (plain.kind, plain.level, plain.count) == ("novel", None, 2)
    assert not plain.template.startswith("Mar")
    assert plain.examples[0].startswith("Mar  2 10:00:40 web01 kernel: Out of memory")

    assert not any("heartbeat" in text or "info notice" in text for text in by_text)
    assert evidence[0] is error  # the most severe first
    assert log_evidence(rows, SINCE, WINDOW_START, WINDOW_END, limit=1) == [error]

    request = ExplainRequest(
        instance_id=INSTANCE,
        window_start=WINDOW_START,
        window_end=WINDOW_END,
        score=0.9,
        model="xgboost_anomaly",
        log_evidence=evidence,
    )
    assert ExplainRequest.model_validate_json(request.model_dump_json()) == request


def test_a_quiet_window_has_no_evidence(store: ObjectStore) -> None:
    quiet_start = SINCE + timedelta(hours=1, minutes=30)
    rows = read_log_rows(store, INSTANCE, SINCE, quiet_start + timedelta(minutes=5))
    assert log_evidence(rows, SINCE, quiet_start, quiet_start + timedelta(minutes=5), 10) == []


def test_without_history_everything_flagged_is_new(store: ObjectStore) -> None:
    rows = read_log_rows(store, INSTANCE, WINDOW_START, WINDOW_END)
    evidence = log_evidence(rows, WINDOW_START, WINDOW_START, WINDOW_END, 10)
    assert {item.kind for item in evidence} == {"novel"}
    assert all(item.baseline == 0.0 for item in evidence)


def test_the_last_log_lines_keep_their_format(store: ObjectStore) -> None:
    rows = read_log_rows(store, INSTANCE, WINDOW_START, WINDOW_END)
    lines = format_log_lines(rows, 4)
    assert len(lines) == 4
    assert lines[-1].startswith("2026-03-02T10:04:54Z WARN slow request")
    plain = [line for line in format_log_lines(rows, 100) if "Out of memory" in line]
    assert plain[0].startswith("2026-03-02T10:00:40Z Mar  2")  # no "None" for a missing level
    assert format_log_lines(rows, 0) == []
