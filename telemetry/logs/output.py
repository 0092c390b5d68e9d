"""Mined records as rows: one per record, in input order, as CSV or as one JSON array."""

import csv
import json
from collections.abc import Iterable
from typing import Literal, TextIO

from telemetry.logs.templates import MinedRecord

ROW_FIELDS = (
    "line",
    "template_id",
    "template",
    "timestamp",
    "level",
    "component",
    "message",
    "parameters",
    "metadata",
    "format",
)
OutputFormat = Literal["csv", "json"]


def record_row(mined: MinedRecord) -> dict[str, object]:
    """One output row: the record's fields, its template, its parameters.

    Args:
        mined: The mined record.

    Returns:
        ``ROW_FIELDS`` to values: the timestamp in ISO 8601 (UTC) or None, ``parameters`` a
        list and ``metadata`` a mapping (JSON text in CSV).
    """
    record = mined.record
    return {
        "line": record.line,
        "template_id": mined.template.template_id,
        "template": mined.template.text,
        "timestamp": record.timestamp.isoformat() if record.timestamp else None,
        "level": record.level,
        "component": record.component,
        "message": record.message,
        "parameters": list(mined.parameters),
        "metadata": dict(record.metadata),
        "format": record.format,
    }


def write_rows(mined: Iterable[MinedRecord], output: OutputFormat, stream: TextIO) -> int:
    """Write the rows of ``mined`` to ``stream``.

    Args:
        mined: Mined records, in input order.
        output: ``csv`` (a header, then a row per record; lists and mappings as JSON text)
            or ``json`` (one array of objects).
        stream: Where to write.

    Returns:
        The number of rows written.
    """
    count = 0
    if output == "csv":
        writer = csv.DictWriter(stream, fieldnames=ROW_FIELDS)
        writer.writeheader()
        for item in mined:
            row = record_row(item)
            row["parameters"] = json.dumps(row["parameters"], ensure_ascii=False)
            row["metadata"] = json.dumps(row["metadata"], ensure_ascii=False)
            writer.writerow(row)
            count += 1
        return count
    stream.write("[")
    for item in mined:
        stream.write(",\n" if count else "\n")
        stream.write(json.dumps(record_row(item), ensure_ascii=False))
        count += 1
    stream.write("\n]\n")
    return count
