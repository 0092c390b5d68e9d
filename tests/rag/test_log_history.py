"""Log history chunks: one per template, instance and window, plain-text lines included
(real parser and template miner on raw-store rows; no model, no network)."""

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from contracts.telemetry import RAW_SCHEMA
from rag.log_history import MAX_EXAMPLES, log_chunks

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# (instance, source, level, message, parse_error, seconds after START)
ROWS = [
    *(
        (
            "i-db01",
            "rds",
            "ERROR",
            f"canceling statement due to statement timeout pid={p}",
            False,
            s,
        )
        for p, s in ((101, 10), (102, 20), (103, 30), (104, 40), (101, 50))
    ),
    ("i-db01", "rds", "ERROR", "canceling statement due to statement timeout pid=105", False, 400),
    ("i-db02", "rds", "ERROR", "canceling statement due to statement timeout pid=106", False, 15),
    ("i-db01", "rds", "INFO", "checkpoint complete: wrote 12 buffers", False, 60),
    # Lines the exporter kept whole: syslog without a level, an access log with a 503, a bare
    # line, and a JSON line whose level is "info".
    (
        "i-web01",
        "ec2",
        None,
        "Mar  2 09:01:05 web01 kernel: Out of memory: Killed process 4242 (java)",
        True,
        65,
    ),
    (
        "i-web01",
        "ec2",
        None,
        "Mar  2 09:01:09 web01 kernel: Out of memory: Killed process 4243 (java)",
        True,
        69,
    ),
    (
        "i-web01",
        "alb",
        None,
        '10.0.0.7 - - [02/Mar/2026:09:01:10 +0000] "GET /api HTTP/1.1" 503 0',
        True,
        70,
    ),
    ("i-web01", "app", None, "segfault in worker 7, restarting", True, 71),
    ("i-web01", "app", None, '{"severity": "info", "msg": "all good"}', True, 72),
]


def _raw(rows: list[tuple[str, str, str | None, str, bool, int]]) -> pa.Table:
    n = len(rows)
    return pa.Table.from_pydict(
        {
            "timestamp": [START + timedelta(seconds=r[5]) for r in rows],
            "instance_id": [r[0] for r in rows],
            "source": [r[1] for r in rows],
            "kind": ["log"] * n,
            "name": [None] * n,
            "value": [None] * n,
            "level": [r[2] for r in rows],
            "message": [r[3] for r in rows],
            "metadata": [None] * n,
            "event_id": [str(i) for i in range(n)],
            "parse_error": [r[4] for r in rows],
        },
        schema=RAW_SCHEMA,
    )


def test_one_chunk_per_template_instance_and_window() -> None:
    windows = {"i-db01": [(START, START + timedelta(minutes=2), "service_outage")]}
    chunks = log_chunks(_raw(ROWS), "raw-logs/key.parquet", windows)
    timeouts = [c for c in chunks if "statement timeout" in c.text]
    keys = sorted((c.payload["instance_id"], c.payload["window_start"][11:16]) for c in timeouts)
    assert keys == [("i-db01", "09:00"), ("i-db01", "09:05"), ("i-db02", "09:00")]
    first = next(c for c in timeouts if c.payload["instance_id"] == "i-db01")
    payload = first.payload
    assert payload["count"] == 5
    assert payload["level"] == "ERROR"
    assert payload["template"] == "canceling statement due to statement timeout pid=<*>"
    assert len(payload["examples"]) == MAX_EXAMPLES  # the first distinct lines
    assert payload["examples"][0] == "canceling statement due to statement timeout pid=101"
    assert (payload["window_start"], payload["window_end"]) == (
        "2026-03-02T09:00:00+00:00",
        "2026-03-02T09:05:00+00:00",
    )
    assert payload["timestamp"] == "2026-03-02T09:00:10+00:00"
    assert payload["ts"] == START.timestamp()
    assert payload["incident_type"] == "service_outage"
    assert payload["document"] == "raw-logs/key.parquet"
    # Every window of the template on the instance has one text (embedded once).
    later = next(c for c in timeouts if c.payload["window_start"][11:16] == "09:05")
    assert (
        later.text
        == first.text
        == ("ERROR [rds] i-db01: canceling statement due to statement timeout pid=101")
    )
    assert later.payload["incident_type"] is None


def test_plain_text_lines_are_indexed_and_info_is_not() -> None:
    chunks = log_chunks(_raw(ROWS), "k", {})
    texts = [c.text for c in chunks]
    oom = next(c for c in chunks if "Out of memory" in c.text)
    assert oom.payload["level"] is None  # syslog names none: kept, severity unknown
    assert oom.payload["count"] == 2
    assert oom.payload["template"] == "Out of memory: Killed process <NUM> (java)"  # no header
    assert oom.text.startswith("LOG [ec2] i-web01: Out of memory")
    access = next(c for c in chunks if "GET /api" in c.text)
    assert access.payload["level"] == "ERROR"  # a 503 in an access log
    assert any("segfault in worker" in t for t in texts)
    assert not any("all good" in t or "checkpoint complete" in t for t in texts)  # INFO


def test_metric_rows_and_empty_files_give_no_chunk() -> None:
    assert log_chunks(_raw([]), "k", {}) == []
