"""Line formats: each turns one line into a ``LogRecord``, or None when the line is not its own.

Built in: JSON lines, syslog (RFC 5424, RFC 3164 with or without a relay prefix), Apache and
Nginx access (common / combined) and error logs, Android logcat, Python ``logging`` defaults,
``DATE TIME LEVEL [thread] logger: msg`` and any header that ends in a level word (log4j,
Python, Go, BGL-like), ``[time] program - msg``, and ``time|component|id|msg``. Custom formats
are a LogPAI header format or a regex with named groups (``custom_format``).
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from telemetry.logs.fields import FieldRoles, record_from_fields
from telemetry.logs.records import LogRecord, normalise_level
from telemetry.logs.timestamps import TimestampFinder, timestamp_from_number

# Level words as headers write them: upper case, capitalised, or any case inside brackets,
# maybe followed by ``:`` or ``,``.
_LEVEL_WORDS = (
    *("TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "WARNING", "ERROR", "SEVERE", "FATAL"),
    *("CRITICAL", "CRIT", "ALERT", "EMERG", "FAILURE"),
)
LEVEL_TOKENS = frozenset(
    f"{spelled}{end}"
    for word in (*_LEVEL_WORDS, "INFORMATION", "VERBOSE")
    for spelled in (
        word,
        word.title(),
        *(f"[{case}]" for case in (word, word.title(), word.lower())),
    )
    for end in ("", ":", ",")
)
MAX_HEADER_TOKENS = 9
_DIGIT = re.compile(r"\d")
# One bracketed block, allowing one level of nested brackets (``[QuorumPeer[myid=1]/0:2181]``).
_BRACKETED = r"\[(?:[^\[\]]|\[[^\[\]]*\])*\]"


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


@dataclass(frozen=True)
class LeveledFormat:
    """Any header that ends in a level word: ``<time, pid, host...> LEVEL [thread] logger: msg``.

    The level is looked for among the first ``MAX_HEADER_TOKENS`` tokens; the header before it
    must be empty or hold a digit (a time, a pid), so that a level word inside a sentence does
    not split it. After the level, a bracketed thread and a ``logger:`` (or ``logger -``, or
    ``logger [context]``) are taken off the message; with no logger there, the word just
    before the level is the component when it is a name (``RAS KERNEL INFO``).
    """

    timestamps: TimestampFinder
    name: str = "leveled"
    tail: re.Pattern[str] = re.compile(
        rf"^(?:(?P<thread>{_BRACKETED})\s+)?"
        r"(?:(?P<component>[A-Za-z_$][\w$.\-/#]*(?:\[[^\]\s]*\])?)"
        rf"(?::\s+|:$|\s+-\s+|\s+(?P<context>{_BRACKETED})\s+))?(?:-\s+)?(?P<message>.*)$",
        re.S,
    )
    name_token: re.Pattern[str] = re.compile(r"^[A-Za-z_][\w$.\-]*$")
    # Where the level was on the last line parsed (a one-item list: the format is frozen).
    level_index: list[int] = field(default_factory=lambda: [0])

    def parse(self, line: str, number: int) -> LogRecord | None:
        """The record on ``line``, or None when no level word closes a header."""
        # A log puts its level at the same token on every line: try where it was last time
        # with one split, then look for it among the first tokens. Splitting and a set lookup
        # per token is several times faster than a regex that tries every level word.
        hint = self.level_index[0]
        tokens = line.split(None, hint + 1)
        if len(tokens) <= hint or tokens[hint] not in LEVEL_TOKENS:
            tokens = line.split(None, MAX_HEADER_TOKENS)
            for hint in range(min(len(tokens), MAX_HEADER_TOKENS)):
                if tokens[hint] in LEVEL_TOKENS:
                    break
            else:
                return None
            self.level_index[0] = hint
            tokens = line.split(None, hint + 1)
        level = tokens[hint]
        header = tokens[:hint]
        prefix = " ".join(header)
        if prefix and _DIGIT.search(prefix) is None:
            return None
        tail = self.tail.match(tokens[hint + 1] if len(tokens) > hint + 1 else "")
        if tail is None:  # the pattern ends in ``.*``: it always matches
            return None
        component = tail["component"]
        if component is None:
            words = [word for word in header if word != "-"]
            if words and self.name_token.match(words[-1]) and not words[-1].isdigit():
                component = words[-1]
        metadata = {"level": level, "header": prefix} if prefix else {"level": level}
        if tail["thread"]:
            metadata["thread"] = tail["thread"][1:-1]
        if tail["context"]:
            metadata["context"] = tail["context"][1:-1]
        return LogRecord(
            number,
            tail["message"],
            self.timestamps.find(prefix) if prefix else None,
            normalise_level(level),
            component,
            metadata,
            self.name,
        )


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


# LogPAI header names the record fields take (case-insensitive); the rest go to metadata.
_LOGPAI_PLACEHOLDER = re.compile(r"(<[^<>]+>)")


def logpai_pattern(log_format: str) -> re.Pattern[str]:
    """The regex of a LogPAI header format, built as LogPAI's parsers build it.

    Args:
        log_format: For example ``"<Date> <Time> <Level> <Component>: <Content>"``; the text
            between placeholders is a regex, and runs of spaces match any whitespace.

    Returns:
        The compiled regex with one named group per placeholder.

    Raises:
        ValueError: When the format has no ``<Content>`` placeholder or is not a valid regex.
    """
    parts = _LOGPAI_PLACEHOLDER.split(log_format)
    if "<Content>" not in parts:
        raise ValueError(f"log format {log_format!r} has no <Content> placeholder")
    regex = ""
    for index, part in enumerate(parts):
        if index % 2 == 0:
            regex += re.sub(" +", r"\\s+", part)
        else:
            regex += f"(?P<{part[1:-1]}>.*?)"
    try:
        return re.compile(f"^{regex}$", re.S)
    except re.error as error:
        raise ValueError(f"log format {log_format!r} is not a valid pattern: {error}") from error


def custom_format(spec: str, default_year: int) -> LineFormat:
    """The format a user names: a regex with named groups, or a LogPAI header format.

    Args:
        spec: A regex with at least a ``message`` (or ``content``/``msg``) named group, such as
            ``(?P<time>\\S+ \\S+) (?P<level>\\w+) (?P<message>.*)``; or a LogPAI format.
        default_year: Year of timestamps written without one.

    Returns:
        The format.

    Raises:
        ValueError: When the spec is not a valid regex or names no message group.
    """
    if "(?P<" not in spec:
        return RegexFormat("logpai", logpai_pattern(spec), TimestampFinder(default_year))
    try:
        pattern = re.compile(spec, re.S)
    except re.error as error:
        raise ValueError(f"--log-format {spec!r} is not a valid regex: {error}") from error
    if FieldRoles.for_names(list(pattern.groupindex)).message is None:
        raise ValueError(f"--log-format {spec!r} names no message group (message, msg, content)")
    return RegexFormat("regex", pattern, TimestampFinder(default_year))
