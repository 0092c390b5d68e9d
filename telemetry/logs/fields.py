"""Named fields (regex groups, JSON keys, LogPAI headers) mapped onto a ``LogRecord``.

Every format that ends in named fields shares this mapping, so ``logger``, ``msg`` or
``@timestamp`` mean the same thing whether a regex group or a JSON key carries them.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from telemetry.logs.records import LogRecord, normalise_level
from telemetry.logs.timestamps import TimestampFinder

# Lower-cased field names per role; the first name present wins.
MESSAGE_NAMES = ("message", "msg", "content", "log", "text", "@message", "event", "body")
LEVEL_NAMES = ("level", "severity", "lvl", "loglevel", "levelname", "log.level", "severity_text")
COMPONENT_NAMES = (
    "component",
    "logger",
    "logger_name",
    "log.logger",
    "source",
    "tag",
    "program",
    "app",
    "appname",
    "module",
    "service",
    "name",
)
# A field named ``timestamp`` alone is parsed first; otherwise the date/time parts are read in
# the order the format names them (LogPAI writes ``<Month> <Date> <Time>``).
TIMESTAMP_NAMES = ("timestamp", "@timestamp", "time", "ts", "datetime", "date", "t", "eventtime")
TIME_PART_NAMES = frozenset(TIMESTAMP_NAMES) | {"month", "day", "year", "hour"}


@dataclass(frozen=True)
class FieldRoles:
    """Which of a format's field names is the message, level, component and time.

    ``metadata`` lists the other names, and the level's (its raw value is kept).
    """

    message: str | None
    level: str | None
    component: str | None
    timestamp: str | None
    time_parts: tuple[str, ...]
    metadata: tuple[str, ...]

    @classmethod
    def for_names(cls, names: list[str]) -> "FieldRoles":
        """Roles of ``names`` (case-insensitive), in the order the format lists them.

        Args:
            names: The field names, as the format spells them.

        Returns:
            The name playing each role (None when no field plays it).
        """
        by_lower = {name.lower(): name for name in names}

        def first(candidates: tuple[str, ...]) -> str | None:
            return next((by_lower[c] for c in candidates if c in by_lower), None)

        message, component = first(MESSAGE_NAMES), first(COMPONENT_NAMES)
        time_parts = tuple(name for name in names if name.lower() in TIME_PART_NAMES)
        used = {message, component, *time_parts}
        return cls(
            message=message,
            level=first(LEVEL_NAMES),
            component=component,
            timestamp=first(("timestamp", "@timestamp", "ts", "datetime")),
            time_parts=time_parts,
            metadata=tuple(name for name in names if name not in used),
        )


def record_from_fields(
    fields: Mapping[str, str | None],
    roles: FieldRoles,
    *,
    line: int,
    format_name: str,
    timestamps: TimestampFinder,
) -> LogRecord:
    """The record named fields describe.

    Args:
        fields: Field name to text (None for an optional field that was absent).
        roles: Which field is which, from ``FieldRoles.for_names``.
        line: 1-based line number of the record.
        format_name: The format that produced the fields, kept on the record.
        timestamps: The format's timestamp finder.

    Returns:
        The record; fields with no role go to ``metadata`` (the raw level too).
    """
    timestamp = None
    if roles.timestamp and fields.get(roles.timestamp):
        timestamp = timestamps.find(fields[roles.timestamp] or "")
    if timestamp is None and roles.time_parts:
        text = " ".join([fields[name] or "" for name in roles.time_parts if fields.get(name)])
        timestamp = timestamps.find(text) if text else None
    raw_level = fields.get(roles.level) if roles.level else None
    return LogRecord(
        line,
        (fields.get(roles.message) or "") if roles.message else "",
        timestamp,
        normalise_level(raw_level) if raw_level else None,
        (fields.get(roles.component) or None) if roles.component else None,
        {name: value for name in roles.metadata if (value := fields.get(name))},
        format_name,
    )
