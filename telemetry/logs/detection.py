"""Lines to records: pick the format from a sample, fall back per line, join multi-line records.

The format that parses the most lines of the first ``SAMPLE_LINES`` is tried first on every
line; a line it refuses is offered to the other formats in order. A line no format takes
continues the record before it when the file has a header format and the line is indented or
starts like a stack trace (``Caused by:``, ``java.lang.IllegalStateException: ...``,
``... 12 more``); otherwise it is a record of its own (format ``plain``).
"""

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, islice
from pathlib import Path

from telemetry.logs.columns import learn_columns
from telemetry.logs.custom import custom_format
from telemetry.logs.formats import LineFormat, builtin_formats
from telemetry.logs.reading import ReadStats, read_lines
from telemetry.logs.records import LogRecord

SAMPLE_LINES = 200
# Lines that continue a record without being indented: the parts of Java and Python stack
# traces that start at the margin.
CONTINUATION = re.compile(
    r"(?:Caused by|Suppressed|Traceback \(most recent call last\)|During handling of the above"
    r"|The above exception)|(?:[a-z_$][\w$]*\.)*[A-Z][\w$]*(?:Exception|Error|Throwable)\b"
    r"|\.\.\. \d+ more$"
)


@dataclass
class ParseStats:
    """How the lines became records."""

    records: int = 0
    continuation_lines: int = 0
    by_format: Counter[str] = field(default_factory=Counter)


@dataclass
class LogParser:
    """Parses lines in any built-in format, or first in the one the user names.

    Attributes:
        formats: Formats in the order they are tried (before detection reorders them).
        default_year: Year of timestamps written without one.
        detected: The format chosen from the sample; None before ``parse`` has seen lines.
        stats: Counts of what ``parse`` made of the lines so far.
    """

    formats: list[LineFormat]
    default_year: int
    detected: LineFormat | None = None
    stats: ParseStats = field(default_factory=ParseStats)

    @classmethod
    def build(cls, log_format: str | None = None, default_year: int | None = None) -> "LogParser":
        """A parser for every built-in format, preceded by ``log_format`` when given.

        Args:
            log_format: A LogPAI header format or a regex with named groups; it is tried first
                on every line, and the built-in formats take the lines it refuses.
            default_year: Year of timestamps written without one (default: this year, as
                syslog readers assume).

        Returns:
            The parser.

        Raises:
            ValueError: When ``log_format`` is not a valid format.
        """
        year = default_year or datetime.now(UTC).year
        formats = builtin_formats(year)
        if log_format:
            custom = custom_format(log_format, year)
            return cls([custom, *formats], year, detected=custom)
        return cls(formats, year)

    def detect(self, sample: list[str]) -> LineFormat | None:
        """The format that parses the most sample lines (ties: the more specific format).

        When no format parses half the sample, a header learned from the sample's columns
        (``columns.learn_columns``) is tried too, and kept when it parses more lines.

        Args:
            sample: The first lines of the input.

        Returns:
            The winning format, or None when no format parses any line (plain text).
        """
        best, best_count = None, 0
        for candidate in self.formats:
            count = sum(1 for line in sample if candidate.parse(line, 0) is not None)
            if count > best_count:
                best, best_count = candidate, count
        if best_count * 2 < len(sample):
            learned = learn_columns(sample, self.default_year)
            count = sum(1 for line in sample if learned and learned.parse(line, 0))
            if learned is not None and count > best_count:
                self.formats.append(learned)
                best = learned
        return best

    def parse(self, lines: Iterable[tuple[int, str]]) -> Iterator[LogRecord]:
        """Records from numbered lines, in input order.

        Args:
            lines: ``(line number, text)`` pairs, as ``reading.read_lines`` yields them.

        Yields:
            One record per log record; a multi-line record comes once, when complete.
        """
        numbered = iter(lines)
        head = list(islice(numbered, SAMPLE_LINES))
        if self.detected is None:
            self.detected = self.detect([text for _, text in head if text.strip()])
        order = self._order()
        primary, others = order[0].parse, order[1:]
        stats = self.stats
        pending: LogRecord | None = None
        for number, text in chain(head, numbered):
            record = primary(text, number)
            if record is None:
                record = _first_parse(text, number, others)
            if record is None:
                if not text.strip():
                    continue
                if pending is not None and self.detected is not None and _continues(text):
                    pending = pending._replace(message=f"{pending.message}\n{text}")
                    stats.continuation_lines += 1
                    continue
                record = LogRecord(number, text)
            if pending is not None:
                stats.records += 1
                stats.by_format[pending.format] += 1
                yield pending
            pending = record
        if pending is not None:
            stats.records += 1
            stats.by_format[pending.format] += 1
            yield pending

    def _order(self) -> list[LineFormat]:
        if self.detected is None:
            return self.formats
        return [self.detected, *(f for f in self.formats if f is not self.detected)]


def _first_parse(text: str, number: int, formats: list[LineFormat]) -> LogRecord | None:
    """The record of the first format that takes the line."""
    for candidate in formats:
        record = candidate.parse(text, number)
        if record is not None:
            return record
    return None


def _continues(text: str) -> bool:
    """Whether a line no format takes continues the record before it."""
    return text[:1].isspace() or CONTINUATION.match(text) is not None


@dataclass(frozen=True)
class ParsedLog:
    """A log file parsed: its records in input order, and what reading and parsing did."""

    records: list[LogRecord]
    reading: ReadStats
    parsing: ParseStats
    format: str


def parse_file(path: Path, log_format: str | None = None) -> ParsedLog:
    """Every record of a log file, in any format (see ``LogParser``).

    Args:
        path: The log file.
        log_format: A LogPAI header format or a named-group regex, tried first on each line.

    Returns:
        The records and the counts of lines skipped, repaired and joined.

    Raises:
        LogInputError: When the file is empty or binary.
        ValueError: When ``log_format`` is not a valid format.
        OSError: When the file cannot be read.
    """
    parser = LogParser.build(log_format)
    reading = ReadStats()
    records = list(parser.parse(read_lines(path, reading)))
    detected = parser.detected.name if parser.detected is not None else "plain"
    return ParsedLog(records, reading, parser.stats, detected)
