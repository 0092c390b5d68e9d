"""A header learned from the file itself, for logs in no known format.

Some logs start every line with fixed columns and no level word, as in
``134681 node-246 unix.hw state_change.unavailable 1077804742 1 Component State Change: ...``.
When the sample shows a column that holds a timestamp (a date, a time, epoch seconds) on at
least ``MIN_SHARE`` of its lines, the header runs up to the last column within
``MAX_HEADER_COLUMNS`` that holds a number (or ``-``) on that share of lines; what follows is
the message. Without such a timestamp column there is no header to learn and lines stay plain.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

from telemetry.logs.records import LogRecord
from telemetry.logs.timestamps import TimestampFinder

MAX_HEADER_COLUMNS = 8
MIN_SHARE = 0.9
# A number in a column: 42, -7, 2005.06.03, 10:11:12, 2005-06-03-15.42.50.675872, or "-".
NUMERIC = re.compile(r"^(?:-|[-+]?\d+(?:[.,:/\-]\d+)*)$")
EPOCH = re.compile(r"^1\d{9}(?:\d{3})?(?:\.\d+)?$")
TIME_OF_DAY = re.compile(r"^\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?$")


@dataclass(frozen=True)
class ColumnsFormat:
    """Lines whose first ``width`` whitespace-separated columns are a header."""

    width: int
    timestamp_column: int
    timestamps: TimestampFinder
    name: str = "columns"

    def parse(self, line: str, number: int) -> LogRecord | None:
        """The record on ``line``, or None when it has too few columns or no time there."""
        tokens = line.split(None, self.width)
        if len(tokens) <= self.width or not _is_time(
            tokens[self.timestamp_column], self.timestamps
        ):
            return None
        header = " ".join(tokens[: self.width])
        return LogRecord(
            number,
            tokens[self.width],
            self.timestamps.find(header),
            None,
            None,
            {"header": header},
            self.name,
        )


def learn_columns(sample: list[str], default_year: int) -> ColumnsFormat | None:
    """The header columns of the sample's lines, if they have a timestamp column.

    Args:
        sample: The first lines of the input.
        default_year: Year of timestamps written without one.

    Returns:
        The learned format, or None when no column holds a timestamp on enough lines.
    """
    rows = [line.split(None, MAX_HEADER_COLUMNS)[:MAX_HEADER_COLUMNS] for line in sample]
    if not rows:
        return None
    needed = MIN_SHARE * len(rows)

    finder = TimestampFinder(default_year)

    def held(column: int, test: Callable[[str], bool]) -> bool:
        return sum(1 for row in rows if len(row) > column and test(row[column])) >= needed

    times = [c for c in range(MAX_HEADER_COLUMNS) if held(c, lambda cell: _is_time(cell, finder))]
    if not times:
        return None
    numeric = [
        c for c in range(MAX_HEADER_COLUMNS) if held(c, lambda cell: bool(NUMERIC.match(cell)))
    ]
    width = max([times[0], *numeric]) + 1
    return ColumnsFormat(width, times[0], finder)


def _is_time(cell: str, finder: TimestampFinder) -> bool:
    """Epoch seconds or milliseconds, a time of day, or a date (with or without a time)."""
    return bool(EPOCH.match(cell) or TIME_OF_DAY.match(cell)) or finder.find(cell) is not None
