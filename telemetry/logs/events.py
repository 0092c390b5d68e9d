"""Log events as raw telemetry rows: each event's text parsed, its template mined.

The one path a log event takes into the raw store, whether the CloudWatch exporter fetched it
(``telemetry.cloudwatch_fetch``) or the simulator wrote it (``telemetry.simulator.simulation``):

1. **Parse.** An event in Vigil's CloudWatch shape, a JSON object ``{"level", "message",
   "metadata"}`` with a known level (``parse_log_message``), is read as such (the fast path:
   what the simulator and Vigil's own services write). Any other text goes through the log
   parser's line formats (``telemetry.logs.formats``: JSON under any key names, syslog,
   Apache/Nginx, Python/Java headers, ...), the first format that takes its first line wins;
   the lines after the first (a stack trace) stay in the message.
2. **Mine.** The message's first line goes to the store's persistent template miner
   (``telemetry.logs.templates``), which hands out the template id.

An event whose level cannot be read keeps its whole text as the message and is flagged
``parse_error`` (the raw schema requires a level on the other log rows); it still gets a
template, mined from the message its format found (the header stripped), and a component.
"""

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from contracts.telemetry import LOG_LEVELS
from telemetry.logs.formats import LineFormat, builtin_formats
from telemetry.logs.records import LogRecord
from telemetry.logs.templates import LogTemplateMiner

# json.dumps with any option builds a new encoder on every call; a log page has thousands
_encode_json = json.JSONEncoder(ensure_ascii=False).encode


class ParsedLogMessage(NamedTuple):
    """A message read as Vigil's CloudWatch shape (see ``parse_log_message``)."""

    level: str | None
    message: str
    metadata: str | None
    parse_error: bool


def parse_log_message(text: str) -> ParsedLogMessage:
    """Split a CloudWatch log message ``{"level", "message", "metadata"}`` into its fields.

    A message that is not such an object (not JSON, level missing or unknown, message not a
    string, metadata not an object) is kept whole in ``message`` and flagged ``parse_error``;
    a known level is kept even then. Levels are matched case-insensitively.

    Args:
        text: the event's message as CloudWatch stores it.

    Returns:
        The level, the message, the metadata as JSON text (None when absent) and the flag.
    """
    try:
        body = json.loads(text)
    except ValueError:
        return ParsedLogMessage(None, text, None, True)
    if not isinstance(body, dict):
        return ParsedLogMessage(None, text, None, True)
    raw_level = body.get("level")
    level = raw_level.upper() if isinstance(raw_level, str) else None
    if level not in LOG_LEVELS:
        level = None
    message = body.get("message")
    metadata = body.get("metadata")
    if level is None or not isinstance(message, str) or not isinstance(metadata, dict | None):
        return ParsedLogMessage(level, text, None, True)
    encoded = None if metadata is None else _encode_json(metadata)
    return ParsedLogMessage(level, message, encoded, False)


class LogEvent(NamedTuple):
    """One log event as the raw rows store it (``contracts.telemetry``)."""

    level: str | None
    component: str | None
    message: str
    metadata: str | None  # JSON text
    parse_error: bool
    template_id: int


# The raw columns a LogEvent fills, in LogEvent order.
EVENT_COLUMNS = LogEvent._fields


def first_line(message: str) -> str:
    """What a message's template is mined from: its first line."""
    return message if "\n" not in message else message.partition("\n")[0]


def mine_template_ids(messages: Iterable[str], miner: LogTemplateMiner) -> list[int]:
    """The template id of each message, mined in order by ``miner`` (which keeps learning).

    Args:
        messages: Parsed messages (headers already removed).
        miner: The store's miner (``telemetry.logs.state.load_miner``).

    Returns:
        One id per message.
    """
    add = miner.add
    return [add(first_line(message)).template_id for message in messages]


class LogEventParser:
    """Parses and mines log event texts in arrival order (see the module)."""

    def __init__(self, miner: LogTemplateMiner, default_year: int | None = None) -> None:
        """A parser feeding ``miner``.

        Args:
            miner: The template miner; it learns from every event parsed.
            default_year: Year of timestamps written without one (syslog); this year when None.
        """
        self.miner = miner
        self._formats: list[LineFormat] = builtin_formats(default_year or datetime.now(UTC).year)

    def parse(self, text: str) -> LogEvent:
        """The raw-row fields of one event.

        Args:
            text: The event's message as it arrived.

        Returns:
            Level, component, message, metadata (JSON text), parse_error and template id.
        """
        vigil = parse_log_message(text)
        if not vigil.parse_error:
            template = self.miner.add(first_line(vigil.message)).template_id
            return LogEvent(vigil.level, None, vigil.message, vigil.metadata, False, template)
        record = self._record(text)
        mined = record.first_line if record is not None and record.message.strip() else text
        template = self.miner.add(first_line(mined)).template_id
        if record is None:
            return LogEvent(vigil.level, None, text, None, True, template)
        metadata = _encode_json(dict(record.metadata)) if record.metadata else None
        if record.level is None or not record.message.strip():
            # No level to file it under: the whole text is kept, as the raw schema asks.
            level = record.level or vigil.level
            return LogEvent(level, record.component, text, metadata, True, template)
        return LogEvent(record.level, record.component, record.message, metadata, False, template)

    def parse_all(self, texts: Sequence[str]) -> dict[str, list[object]]:
        """The raw columns of events, ``EVENT_COLUMNS`` to one value per event, in order."""
        events = [self.parse(text) for text in texts]
        return {name: [event[i] for event in events] for i, name in enumerate(EVENT_COLUMNS)}

    def _record(self, text: str) -> LogRecord | None:
        """The record the first format taking the event's first line makes of the event."""
        line, newline, rest = text.partition("\n")
        for position, candidate in enumerate(self._formats):
            record = candidate.parse(line, 1)
            if record is None:
                continue
            if position:
                # Events of one stream share a format: try the last one that worked first.
                self._formats.insert(0, self._formats.pop(position))
            if newline:
                record = record._replace(message=f"{record.message}\n{rest}")
            return record
        return None
