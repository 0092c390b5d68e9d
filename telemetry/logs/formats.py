"""Line formats: each turns one line into a ``LogRecord``, or None when the line is not its own.

Built in: JSON lines, syslog (RFC 5424, RFC 3164 with or without a relay prefix), Apache and
Nginx access (common / combined) and error logs, Android logcat, Python ``logging`` defaults,
``DATE TIME LEVEL [thread] logger: msg`` and any header that ends in a level word (log4j,
Python, Go, BGL-like), ``[time] program - msg``, and ``time|component|id|msg``. Custom formats
are a LogPAI header format or a regex with named groups (``custom.custom_format``).
"""

import re
from dataclasses import dataclass, field
from typing import Protocol

from telemetry.logs.fields import FieldRoles, record_from_fields
from telemetry.logs.json_lines import JsonFormat
from telemetry.logs.leveled import LeveledFormat
from telemetry.logs.records import LogRecord, normalise_level
from telemetry.logs.timestamps import TimestampFinder


class LineFormat(Protocol):
    """A log line format: parses the lines written in it and refuses the others."""

    @property
    def name(self) -> str:
        """The format's name, kept on each record it parses."""

    def parse(self, line: str, number: int) -> LogRecord | None:
        """The record on ``line`` (numbered ``number``), or None when the line is not in this
        format."""


@dataclass(frozen=True)
class RegexFormat:
    """A format given by a regex with named groups (see ``fields`` for the group names)."""

    name: str
    pattern: re.Pattern[str]
    timestamps: TimestampFinder
    roles: FieldRoles = field(init=False)

    def __post_init__(self) -> None:
        names = sorted(self.pattern.groupindex, key=self.pattern.groupindex.__getitem__)
        object.__setattr__(self, "roles", FieldRoles.for_names(names))

    def parse(self, line: str, number: int) -> LogRecord | None:
        """The record on ``line``, or None when the regex does not match it."""
        match = self.pattern.match(line)
        if match is None:
            return None
        return record_from_fields(
            match.groupdict(),
            self.roles,
            line=number,
            format_name=self.name,
            timestamps=self.timestamps,
        )


@dataclass(frozen=True)
class PriorityFormat(RegexFormat):
    """Syslog: the level comes from the ``<PRI>`` (severity = PRI mod 8) when there is one."""

    def parse(self, line: str, number: int) -> LogRecord | None:
        """The record on ``line``, its level read from the priority."""
        record = super().parse(line, number)
        if record is None or "pri" not in record.metadata or record.level is not None:
            return record
        level = normalise_level(int(record.metadata["pri"]) % 8)
        return record._replace(level=level)


@dataclass(frozen=True)
class AccessFormat(RegexFormat):
    """HTTP access logs: the level follows the status (5xx ERROR, 4xx WARN, else INFO)."""

    def parse(self, line: str, number: int) -> LogRecord | None:
        """The record on ``line``; its message is the request line and the status."""
        record = super().parse(line, number)
        if record is None:
            return None
        status = record.metadata.get("status", "")
        level = "ERROR" if status.startswith("5") else "WARN" if status.startswith("4") else "INFO"
        return record._replace(
            message=f"{record.metadata.get('request', '')} {status}", level=level
        )


_SYSLOG_TAG = (
    r"(?:(?P<program>[\w./@-]+(?:\([^)\s]*\))?)(?:\[(?P<pid>\d+)\])?(?: \([^)]*\))?:(?: |$))?"
)


def builtin_formats(default_year: int) -> list[LineFormat]:
    """Every built-in format, most specific first (the order breaks detection ties).

    Args:
        default_year: Year of timestamps written without one (syslog, logcat).

    Returns:
        The formats, ready to parse lines.
    """

    def regex(name: str, pattern: str, kind: type[RegexFormat] = RegexFormat) -> RegexFormat:
        return kind(name, re.compile(pattern, re.S), TimestampFinder(default_year))

    return [
        JsonFormat(TimestampFinder(default_year)),
        regex(
            "syslog5424",
            r"^<(?P<pri>\d{1,3})>(?P<version>\d{1,2}) (?P<timestamp>\S+) (?P<host>\S+) "
            r"(?P<app>\S+) (?P<procid>\S+) (?P<msgid>\S+) "
            r"(?P<structured_data>-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: \ufeff?(?P<message>.*))?$",
            PriorityFormat,
        ),
        regex(
            "http_access",
            r"^(?P<client>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<timestamp>[^\]]+)\] "
            r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<size>\d+|-)'
            r'(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)")?(?P<extra>.*)$',
            AccessFormat,
        ),
        regex(
            "apache_error",
            r"^\[(?P<timestamp>(?:[A-Z][a-z]{2} ){2}[ \d]\d \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4})\] "
            r"\[(?:(?P<component>[\w-]+):)?(?P<level>\w+)\]"
            r"(?: \[pid (?P<pid>\d+)(?::tid (?P<tid>\d+))?\])?(?: \[client (?P<client>[^\]]+)\])?"
            r" (?P<message>.*)$",
        ),
        regex(
            "nginx_error",
            r"^(?P<timestamp>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}) \[(?P<level>\w+)\] "
            r"(?P<pid>\d+)#(?P<tid>\d+): (?:\*(?P<connection>\d+) )?(?P<message>.*)$",
        ),
        regex(
            "logcat",
            r"^(?P<timestamp>\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3})\s+(?P<pid>\d+)\s+(?P<tid>\d+)\s+"
            r"(?P<level>[VDIWEFA])\s+(?P<component>[^:]*?)\s*: (?P<message>.*)$",
        ),
        regex(
            "syslog3164",
            r"^(?:<(?P<pri>\d{1,3})>)?(?P<relay>(?:[^\s\[\]]+ ){1,4}?)??"
            r"(?P<timestamp>[A-Z][a-z]{2} {1,2}\d{1,2} \d{2}:\d{2}:\d{2}(?: \d{4})?) "
            r"(?P<host>\S+) " + _SYSLOG_TAG + r"(?P<message>.*)$",
            PriorityFormat,
        ),
        regex(
            "python_basic",
            r"^(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):(?P<logger>[^:\s]*):(?P<message>.*)$",
        ),
        LeveledFormat(TimestampFinder(default_year)),
        regex(
            "bracketed",
            r"^\[(?P<timestamp>[^\]]*\d[^\]]*)\] (?:(?P<program>[^\s\[\]]+) - )?(?P<message>.*)$",
        ),
        regex(
            "pipe_delimited",
            r"^(?P<timestamp>[^|\s]*\d[^|]*)\|(?P<component>[^|]+)\|(?:(?P<pid>\d+)\|)?"
            r"(?P<message>.*)$",
        ),
    ]
