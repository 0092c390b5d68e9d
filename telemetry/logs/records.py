"""The record every log format is parsed into, and the level names records are normalised to."""

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import NamedTuple

# Spellings of a level seen in the wild, lower-cased, mapped onto
# contracts.telemetry.LOG_LEVELS.
# Single letters are Android's logcat and Go's klog; numbers are syslog severities (RFC 5424).
LEVEL_ALIASES: dict[str, str] = {
    **dict.fromkeys(
        ["trace", "trc", "debug", "dbg", "verbose", "fine", "finer", "finest", "v", "d", "7"],
        "DEBUG",
    ),
    **dict.fromkeys(
        ["info", "inf", "information", "informational", "notice", "note", "i", "6", "5"], "INFO"
    ),
    **dict.fromkeys(["warn", "warning", "wrn", "w", "4"], "WARN"),
    **dict.fromkeys(["error", "err", "eror", "severe", "failure", "fail", "e", "3"], "ERROR"),
    **dict.fromkeys(
        [
            *("critical", "crit", "fatal", "ftl", "emerg", "emergency", "alert", "panic"),
            *("f", "a", "0", "1", "2"),
        ],
        "CRITICAL",
    ),
}

# The same aliases as written in upper case or capitalised: found without normalising the text.
LEVEL_ALIASES_EXACT = {
    spelled: level
    for alias, level in LEVEL_ALIASES.items()
    for spelled in (alias, alias.upper(), alias.title())
}

# pino / bunyan numeric levels (JSON loggers for Node.js).
NUMERIC_LEVELS = {10: "DEBUG", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "CRITICAL"}


def normalise_level(raw: object) -> str | None:
    """One of ``LOG_LEVELS`` for a level as a log wrote it, or None when it is not a level.

    Args:
        raw: The level text (``"warning"``, ``"E"``, ``"<3>"``) or a number (syslog severity
            0-7, pino level 10-60).

    Returns:
        DEBUG, INFO, WARN, ERROR or CRITICAL; None for anything else.
    """
    if isinstance(raw, str) and raw in LEVEL_ALIASES_EXACT:
        return LEVEL_ALIASES_EXACT[raw]
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        number = int(raw)
        return NUMERIC_LEVELS.get(number) or LEVEL_ALIASES.get(str(number))
    if not isinstance(raw, str):
        return None
    return LEVEL_ALIASES.get(raw.strip().strip("[]<>").lower())


class LogRecord(NamedTuple):
    """One log record, however its line was written.

    ``line`` is the 1-based number of the record's first line; a multi-line record (a stack
    trace) keeps its continuation lines in ``message`` after a newline. ``timestamp`` is UTC
    (None when the line has none), ``level`` one of ``LOG_LEVELS`` (None when absent or not
    recognised; the raw value stays in ``metadata``), and ``metadata`` holds every other field
    the format names (host, pid, thread, HTTP status, extra JSON keys). A named tuple rather
    than a frozen dataclass: records are made once per line, and a tuple is made three times
    faster.
    """

    line: int
    message: str
    timestamp: datetime | None = None
    level: str | None = None
    component: str | None = None
    metadata: Mapping[str, str] = MappingProxyType({})
    format: str = "plain"

    @property
    def first_line(self) -> str:
        """The message without continuation lines: what templates are mined from."""
        message = self.message
        return message if "\n" not in message else message.partition("\n")[0]
