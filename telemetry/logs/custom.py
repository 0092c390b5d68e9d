"""Formats a user names: a LogPAI header format, or a regex with named groups."""

import re

from telemetry.logs.fields import FieldRoles
from telemetry.logs.formats import LineFormat, RegexFormat
from telemetry.logs.timestamps import TimestampFinder

# A ``<Name>`` placeholder of a LogPAI format; ``fields`` maps the names onto record fields.
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
