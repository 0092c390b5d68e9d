"""Lines to records: pick the format from a sample, fall back per line, join multi-line records.

The format that parses the most lines of the first ``SAMPLE_LINES`` is tried first on every
line; a line it refuses is offered to the other formats in order, and a line no format takes
is a record of its own (format ``plain``) - unless the file has a header format and the line
does not, in which case it continues the record before it (a stack trace, a wrapped message).
"""

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice

from telemetry.logs.formats import LineFormat, builtin_formats, custom_format
from telemetry.logs.records import LogRecord

SAMPLE_LINES = 200


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
        detected: The format chosen from the sample; None before ``parse`` has seen lines.
    """

    formats: list[LineFormat]
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
            return cls([custom, *formats], detected=custom)
        return cls(formats)

    def detect(self, sample: list[str]) -> LineFormat | None:
        """The format that parses the most sample lines (ties: the more specific format).

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
        primary = order[0].parse if order else None
        pending: LogRecord | None = None
        for number, text in _chain(head, numbered):
            record = primary(text, number) if primary else None
            if record is None:
                record = self._parse_line(text, number, order[1:])
            if record is None:
                if pending is not None and self.detected is not None:
                    pending = _continued(pending, text)
                    self.stats.continuation_lines += 1
                    continue
                if not text.strip():
                    continue
                record = LogRecord(line=number, message=text)
            if pending is not None:
                yield self._counted(pending)
            pending = record
        if pending is not None:
            yield self._counted(pending)

    def _order(self) -> list[LineFormat]:
        if self.detected is None:
            return self.formats
        return [self.detected, *(f for f in self.formats if f is not self.detected)]

    @staticmethod
    def _parse_line(text: str, number: int, order: list[LineFormat]) -> LogRecord | None:
        if not text.strip():
            return None
        for candidate in order:
            record = candidate.parse(text, number)
            if record is not None:
                return record
        return None

    def _counted(self, record: LogRecord) -> LogRecord:
        self.stats.records += 1
        self.stats.by_format[record.format] += 1
        return record


def _chain(
    head: list[tuple[int, str]], rest: Iterator[tuple[int, str]]
) -> Iterator[tuple[int, str]]:
    yield from head
    yield from rest


def _continued(record: LogRecord, text: str) -> LogRecord:
    return record._replace(message=f"{record.message}\n{text}")
