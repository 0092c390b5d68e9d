"""JSON lines: one object per line, under any of the usual key names."""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from telemetry.logs.fields import FieldRoles, record_from_fields
from telemetry.logs.records import LogRecord, normalise_level
from telemetry.logs.timestamps import TimestampFinder, timestamp_from_number


@dataclass(frozen=True)
class JsonFormat:
    """One JSON object per line, under any of the usual key names (``fields``)."""

    timestamps: TimestampFinder
    name: str = "json"

    def parse(self, line: str, number: int) -> LogRecord | None:
        """The record in the JSON object on ``line``, or None when it is not a JSON object."""
        if not line.lstrip().startswith("{"):
            return None
        try:
            document = json.loads(line)
        except ValueError:
            return None
        if not isinstance(document, dict):
            return None
        flat = _flatten(document)
        roles = FieldRoles.for_names(list(flat))
        if roles.message is None and "log" in flat:
            roles = FieldRoles.for_names([*flat, "log"])
        text_fields = {key: _as_text(value) for key, value in flat.items()}
        record = record_from_fields(
            text_fields, roles, line=number, format_name=self.name, timestamps=self.timestamps
        )
        raw_time = next(
            (flat[key] for key in flat if key.lower() in ("time", "timestamp", "ts", "@timestamp")),
            None,
        )
        if isinstance(raw_time, int | float) and not isinstance(raw_time, bool):
            record = record._replace(timestamp=timestamp_from_number(raw_time))
        raw_level = flat.get(roles.level) if roles.level else None
        if isinstance(raw_level, int | float):
            record = record._replace(level=normalise_level(raw_level))
        return record


def _flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects as dotted keys (ECS writes ``{"log": {"level": "info"}}``)."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
