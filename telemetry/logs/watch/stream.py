"""Lines to records as they arrive, for a source that never ends.

``detection.LogParser`` parses a finite batch: it reads a sample to pick the format, and a
record is complete only once the next one starts (a stack trace's lines follow its first). On
a live source the parser is given what arrived; the last record of a batch is held back,
with its lines, until more lines come (they may continue it) or the window closes. The format
is picked once ``SAMPLE_LINES`` lines have arrived, or at the first window close if fewer did.
"""

from dataclasses import dataclass

from telemetry.logs.detection import SAMPLE_LINES, LogParser
from telemetry.logs.records import LogRecord
from telemetry.logs.watch.sources import SourceLine


@dataclass(frozen=True)
class StreamRecord:
    """A parsed record (its ``line`` the number in its origin) and its first source line."""

    record: LogRecord
    first: SourceLine


class IncrementalParser:
    """Records of a live source (see the module docstring).

    Args:
        log_format: A LogPAI header format or a named-group regex, tried first on each line.
        default_year: Year of timestamps written without one (default: this year).
    """

    def __init__(self, log_format: str | None = None, default_year: int | None = None) -> None:
        self.parser = LogParser.build(log_format, default_year)
        self.records = 0
        self._buffer: list[SourceLine] = []

    @property
    def format(self) -> str:
        """The detected format's name ("plain" before, or when none fits)."""
        detected = self.parser.detected
        return detected.name if detected is not None else "plain"

    def feed(self, lines: list[SourceLine]) -> list[StreamRecord]:
        """The records completed by ``lines``; the last one waits for what follows."""
        self._buffer += lines
        if self.parser.detected is None and len(self._buffer) < SAMPLE_LINES:
            return []
        return self._parse(final=False)

    def flush(self) -> list[StreamRecord]:
        """Every record still held (the window closes)."""
        return self._parse(final=True)

    def _parse(self, *, final: bool) -> list[StreamRecord]:
        buffer = self._buffer
        if not buffer:
            return []
        # The parser numbers lines by their position in the buffer; records are renumbered
        # with their source line afterwards.
        records = list(self.parser.parse((i + 1, line.text) for i, line in enumerate(buffer)))
        keep_from = len(buffer)
        if not final and records:
            keep_from = records.pop().line - 1
        self._buffer = buffer[keep_from:]
        self.records += len(records)
        return [
            StreamRecord(
                record._replace(line=buffer[record.line - 1].number), buffer[record.line - 1]
            )
            for record in records
        ]
