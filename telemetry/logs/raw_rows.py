"""Log records from the raw telemetry rows the exporter and the simulator store.

A row the exporter could not parse when it stored it (``parse_error``) is parsed again here for
its header and level, by the format most of those rows are in; the rag indexer and the scorer's
explanation trigger read log history through this one function.
"""

from collections.abc import Sequence
from typing import Any

from telemetry.logs.detection import SAMPLE_LINES, LogParser
from telemetry.logs.formats import LineFormat
from telemetry.logs.records import LogRecord


def raw_log_records(rows: Sequence[dict[str, Any]]) -> list[LogRecord]:
    """One record per raw log row, in row order, numbered from 1 (``line``).

    The row's timestamp and level win over the line's own; the component is the program the
    line names, else the row's source.

    Args:
        rows: Raw rows with at least ``timestamp``, ``source``, ``level``, ``message`` and
            ``parse_error`` (``contracts.telemetry.RAW_SCHEMA``).

    Returns:
        The records.
    """
    whole = [str(r["message"] or "").partition("\n")[0] for r in rows if r["parse_error"]]
    parser = LogParser.build()
    detected = parser.detect(whole[:SAMPLE_LINES]) if whole else None
    # The format most of the file's whole lines are in is tried first, as LogParser does.
    formats = [*([detected] if detected else []), *(f for f in parser.formats if f is not detected)]
    records = []
    for number, row in enumerate(rows, 1):
        message = str(row["message"] or "")
        record = LogRecord(number, message, row["timestamp"], row["level"], row["source"])
        if row["parse_error"]:
            parsed = _parse_line(message, number, formats)
            if parsed is not None:
                record = record._replace(
                    message=parsed.message,
                    level=row["level"] or parsed.level,
                    component=parsed.component or row["source"],
                )
        records.append(record)
    return records


def _parse_line(message: str, number: int, formats: Sequence[LineFormat]) -> LogRecord | None:
    """The record of a whole line by the first format that takes its first line; the rest of
    a multi-line message (a stack trace) stays in the record's message."""
    first, newline, rest = message.partition("\n")
    for candidate in formats:
        parsed = candidate.parse(first, number)
        if parsed is not None:
            return parsed._replace(message=parsed.message + newline + rest)
    return None
