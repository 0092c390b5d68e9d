"""Records collapsed by template into sliding windows, counted in tokens.

A window is a run of consecutive records. Inside it, records are collapsed by template: the
first record of a template becomes the window's *entry* for it (shown to the LLM as an example
line), and later records of the same template only raise the entry's count and move its last
line. A window therefore costs tokens per template it holds, not per record, and covers far
more of the log than its budget of raw lines would.

A window closes when the next record would take its text past ``max_tokens`` (a new template's
entry, or a longer header of a known one) or when it holds ``max_records`` records. The next
window starts ``overlap`` of a window back: the last records whose entries cost at most
``overlap × max_tokens`` tokens (and number at most ``overlap × max_records``) open it again,
so an event at a window's edge is seen whole in one of them. A record is never split: a window
starts and ends on record boundaries, and a record longer than a window's budget is shown cut
short (``MAX_EXAMPLE_CHARS``) in a window of its own.

The token cost of an entry is its example's body, counted once by the tokenizer, plus its
header (line numbers, count, time), counted by the approximate rule: a header is digits and
punctuation, one token each under every tokenizer we measured. A window's reported ``tokens``
is its whole text counted by the tokenizer.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from telemetry.logs.analysis.tokens import Tokenizer
from telemetry.logs.templates import MinedRecord

MAX_EXAMPLE_CHARS = 300
MAX_CONTINUATION_LINES = 2
MAX_CONTINUATION_CHARS = 160


@dataclass
class Entry:
    """A template's records in one window: the first is the example, the rest are counted."""

    template_id: int
    template: str
    example: MinedRecord
    body: str
    body_tokens: int
    count: int = 1
    first_line: int = 0
    last_line: int = 0
    last_time: datetime | None = None

    @property
    def header(self) -> str:
        """``L<first>`` for one record, ``L<first>-<last> x<count>`` for several; then the
        first record's time of day when it has one."""
        lines = (
            f"L{self.first_line}"
            if self.count == 1
            else f"L{self.first_line}-{self.last_line} x{self.count}"
        )
        stamp = self.example.record.timestamp
        return f"{lines} {stamp:%H:%M:%S}" if stamp is not None else lines

    @property
    def header_tokens(self) -> int:
        """Tokens of ``header`` and the line break after the entry (see the module)."""
        return header_tokens(
            self.first_line,
            self.last_line,
            self.count,
            has_time=self.example.record.timestamp is not None,
        )

    @property
    def tokens(self) -> int:
        """The entry's cost in the window."""
        return self.body_tokens + self.header_tokens

    def text(self) -> str:
        """The entry as the LLM reads it."""
        return f"{self.header} {self.body}"


def header_tokens(first: int, last: int, count: int, *, has_time: bool) -> int:
    """Tokens of an entry's header, the space after it and the line break: one per digit,
    punctuation mark and separator."""
    tokens = 1 + _digits(first) + 2  # "L", the digits, the space before the body, the break
    if count > 1:
        tokens += 1 + _digits(last) + 1 + _digits(count)  # "-", digits, " x", digits
    if has_time:
        tokens += 1 + 8  # the space, "HH:MM:SS"
    return tokens


def _digits(number: int) -> int:
    return len(str(number))


@dataclass
class Window:
    """A window: records ``start`` to ``end`` (exclusive) of the file, collapsed into entries."""

    index: int
    start: int
    end: int
    entries: list[Entry]
    lines: int
    tokens: int
    overlap_records: int
    overlap_tokens: int
    counts: Counter[int] = field(default_factory=Counter)

    @property
    def records(self) -> int:
        """Records the window covers."""
        return self.end - self.start

    @property
    def first_line(self) -> int:
        """The window's first input line."""
        return min(entry.first_line for entry in self.entries)

    @property
    def last_line(self) -> int:
        """The first line of the window's last record."""
        return max(entry.last_line for entry in self.entries)


def record_body(mined: MinedRecord) -> str:
    """An example record as the LLM reads it: level, component, message (cut short), and the
    first continuation lines of a multi-line record."""
    record = mined.record
    first, _, rest = record.message.partition("\n")
    parts = [record.level or "", f"{record.component}:" if record.component else "", first]
    body = " ".join(part for part in parts if part)
    if len(body) > MAX_EXAMPLE_CHARS:
        body = body[:MAX_EXAMPLE_CHARS] + "…"
    if rest:
        more = rest.split("\n")
        for line in more[:MAX_CONTINUATION_LINES]:
            cut = line.strip()[:MAX_CONTINUATION_CHARS]
            body += f"\n    {cut}"
        if len(more) > MAX_CONTINUATION_LINES:
            body += f"\n    (+{len(more) - MAX_CONTINUATION_LINES} more lines)"
    return body


def record_end_line(mined: MinedRecord) -> int:
    """The last input line of a record (a multi-line record spans several)."""
    return mined.record.line + mined.record.message.count("\n")


@dataclass
class WindowBuilder:
    """Cuts mined records into windows (see the module docstring).

    Attributes:
        tokenizer: Counts entry bodies and window texts.
        max_tokens: A window's token budget.
        overlap: Share of a window the next one repeats (0 to 0.5).
        max_records: Most records in a window.
    """

    tokenizer: Tokenizer
    max_tokens: int
    overlap: float
    max_records: int
    _bodies: dict[int, tuple[str, int]] = field(default_factory=dict)

    def build(self, mined: Sequence[MinedRecord]) -> list[Window]:
        """The windows of ``mined``, in order; none for no records.

        Args:
            mined: The file's records with their templates, in input order.

        Returns:
            Windows covering every record; consecutive windows share their overlap.
        """
        windows: list[Window] = []
        start, overlap_records, overlap_tokens = 0, 0, 0
        while start < len(mined):
            entries, end, tokens = self._fill(mined, start)
            window = Window(
                index=len(windows),
                start=start,
                end=end,
                entries=list(entries.values()),
                lines=record_end_line(mined[end - 1]) - mined[start].record.line + 1,
                tokens=tokens,
                overlap_records=overlap_records,
                overlap_tokens=overlap_tokens,
                counts=Counter({tid: entry.count for tid, entry in entries.items()}),
            )
            window.tokens = self.tokenizer.count(window_text(window))
            windows.append(window)
            if end >= len(mined):
                break
            overlap_records, overlap_tokens = self._tail(mined, start, end)
            start = end - overlap_records
        return windows

    def _fill(self, mined: Sequence[MinedRecord], start: int) -> tuple[dict[int, Entry], int, int]:
        """Entries of the window opening at ``start``, where it ends, and its estimated tokens."""
        entries: dict[int, Entry] = {}
        tokens = 0
        limit = min(len(mined), start + self.max_records)
        index = start
        while index < limit:
            item = mined[index]
            record = item.record
            template_id = item.template.template_id
            entry = entries.get(template_id)
            if entry is None:
                body, body_tokens = self._body(item)
                cost = body_tokens + header_tokens(
                    record.line, record.line, 1, has_time=record.timestamp is not None
                )
                if entries and tokens + cost > self.max_tokens:
                    break
                entries[template_id] = Entry(
                    template_id,
                    item.template.text,
                    item,
                    body,
                    body_tokens,
                    first_line=record.line,
                    last_line=record.line,
                    last_time=record.timestamp,
                )
                tokens += cost
            else:
                before = entry.header_tokens
                grown = header_tokens(
                    entry.first_line,
                    record.line,
                    entry.count + 1,
                    has_time=entry.example.record.timestamp is not None,
                )
                if tokens + grown - before > self.max_tokens:
                    break
                entry.count += 1
                entry.last_line = record.line
                if record.timestamp is not None:
                    entry.last_time = record.timestamp
                tokens += grown - before
            index += 1
        return entries, index, tokens

    def _tail(self, mined: Sequence[MinedRecord], start: int, end: int) -> tuple[int, int]:
        """How many of the window's last records the next window repeats, and their tokens."""
        budget_tokens = self.overlap * self.max_tokens
        budget_records = int(self.overlap * self.max_records)
        seen: set[int] = set()
        tokens = 0
        taken = 0
        # The next window must start after this one did: at least one record is new. With any
        # overlap at all, the last record is always repeated, whatever its entry costs.
        for index in range(end - 1, start, -1):
            if taken >= max(1, budget_records) or self.overlap == 0:
                break
            item = mined[index]
            template_id = item.template.template_id
            if template_id not in seen:
                _, body_tokens = self._body(item)
                cost = body_tokens + header_tokens(
                    item.record.line,
                    item.record.line,
                    1,
                    has_time=item.record.timestamp is not None,
                )
                if taken and tokens + cost > budget_tokens:
                    break
                seen.add(template_id)
                tokens += cost
            taken += 1
        return taken, tokens

    def _body(self, item: MinedRecord) -> tuple[str, int]:
        """The body of a record and its tokens, remembered per record line."""
        line = item.record.line
        cached = self._bodies.get(line)
        if cached is None:
            body = record_body(item)
            cached = (body, self.tokenizer.count(body))
            if len(self._bodies) > 4 * self.max_records:
                self._bodies.clear()
            self._bodies[line] = cached
        return cached


def window_text(window: Window) -> str:
    """The window as the LLM reads it: one entry per line, in order of first occurrence."""
    return "\n".join(entry.text() for entry in window.entries)
