"""Where the watcher's lines come from: a file followed like ``tail -F``, or standard input.

A source is polled: ``poll(timeout)`` returns the complete lines that arrived since the last
call (waiting up to ``timeout`` when none did). After the watcher has emitted a window it
calls ``commit()`` with the ``checkpoint()`` taken when the window closed: the Kinesis source
writes its checkpoints there; these sources keep nothing.

``FileTail`` survives what log rotation does to a file:

- *rename and a new file* (logrotate's default, most loggers' rollover): once the old file is
  read to its end and the path names another file (another inode), the rest of the old file is
  read, then the new file from its first byte;
- *truncation* (logrotate's ``copytruncate``, ``> app.log``): the file is shorter than what
  was read: it is read again from its first byte;
- *the path missing for a while* (between the rename and the new file): the old file is still
  followed, and the new one picked up when it appears.

A line is only handed on once its newline has arrived, so a line being written is never cut in
two; a line longer than ``max_line_bytes`` is skipped without being held in memory, and bytes
that are not text cost their line only (``reading.iter_lines`` decides, as for a file).
"""

import io
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from contracts.log_watch import WatchSourceKind
from telemetry.logs.reading import MAX_LINE_BYTES, ReadStats, iter_lines

READ_CHUNK_BYTES = 1 << 16
# Bytes read from a file in one poll at most: a large backlog is read over several polls, so
# windows still close on time while the watcher catches up.
MAX_POLL_BYTES = 8 << 20


@dataclass(frozen=True)
class SourceLine:
    """A line of the source: its number in its origin, its text, and where it comes from."""

    number: int
    text: str
    origin: str


class LineSource(Protocol):
    """What the watcher reads lines from."""

    kind: WatchSourceKind
    name: str
    stats: ReadStats

    @property
    def exhausted(self) -> bool:
        """True once the source can give no more lines (standard input closed)."""
        ...

    def poll(self, timeout: float) -> list[SourceLine]:
        """The lines that arrived since the last call; waits up to ``timeout`` for some."""
        ...

    def lag_seconds(self) -> float:
        """How far behind its source the watcher is (0 when it has read everything)."""
        ...

    def checkpoint(self) -> object:
        """Where the source has been read to: what ``commit`` records once the window that
        holds those lines has been emitted (None for sources that keep nothing)."""
        ...

    def commit(self, position: object) -> None:
        """The lines up to ``position`` (a ``checkpoint()``) are in emitted windows."""
        ...

    def close(self) -> None:
        """Release what the source holds (files, leases)."""
        ...


class LineSplitter:
    """Bytes in, complete decoded lines out, numbered from 1; a line too long is skipped
    (and still numbered), never buffered whole."""

    def __init__(self, stats: ReadStats, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.stats = stats
        self.max_line_bytes = max_line_bytes
        self.line = 0  # lines numbered so far
        self._partial = bytearray()
        self._dropping = False  # inside a line already counted as too long

    def feed(self, data: bytes) -> list[tuple[int, str]]:
        """The lines ``data`` completes, after what was fed before."""
        if self._dropping:
            newline = data.find(b"\n")
            if newline < 0:
                return []
            data, self._dropping = data[newline + 1 :], False
        self._partial += data
        end = self._partial.rfind(b"\n")
        lines: list[tuple[int, str]] = []
        if end >= 0:
            lines = self._decode(bytes(self._partial[: end + 1]))
            del self._partial[: end + 1]
        if len(self._partial) > self.max_line_bytes:
            self._partial.clear()
            self._dropping = True
            self.line += 1
            self.stats.lines += 1
            self.stats.skipped_too_long += 1
        return lines

    def flush(self) -> list[tuple[int, str]]:
        """The last line when it has no newline (its file was rotated, or the stream ended)."""
        rest, self._partial = bytes(self._partial), bytearray()
        self._dropping = False
        return self._decode(rest + b"\n") if rest else []

    def restart(self) -> None:
        """A new file (or the same one truncated): numbers start again from 1."""
        self._partial.clear()
        self._dropping = False
        self.line = 0

    def _decode(self, complete: bytes) -> list[tuple[int, str]]:
        base = self.line
        self.line += complete.count(b"\n")
        lines = iter_lines(io.BytesIO(complete), self.stats, self.max_line_bytes)
        return [(base + number, text) for number, text in lines]


class FileTail:
    """A file followed through rotation and truncation (see the module docstring).

    Args:
        path: The file; it may not exist yet.
        from_start: Read what the file already holds first; otherwise start at its end.
        max_line_bytes: Longer lines are skipped (and counted).
        clock: Monotonic seconds (a parameter for tests).
        sleep: How to wait (a parameter for tests).
    """

    kind: WatchSourceKind = "file"

    def __init__(
        self,
        path: Path,
        *,
        from_start: bool = False,
        max_line_bytes: int = MAX_LINE_BYTES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = path
        self.name = str(path)
        self.stats = ReadStats()
        self.rotations = 0
        self.truncations = 0
        self._splitter = LineSplitter(self.stats, max_line_bytes)
        self._clock, self._sleep = clock, sleep
        self._file: BinaryIO | None = None
        self._identity: tuple[int, int] | None = None
        self._caught_up_at = clock()
        self._open(from_start=from_start)

    @property
    def exhausted(self) -> bool:
        return False  # a file may always grow, or be replaced

    def poll(self, timeout: float) -> list[SourceLine]:
        lines = self._read()
        if not lines and timeout > 0:
            self._sleep(timeout)
        return lines

    def lag_seconds(self) -> float:
        """Seconds since the file was last read to its end (0 right after)."""
        return max(0.0, self._clock() - self._caught_up_at)

    def checkpoint(self) -> object:
        return None

    def commit(self, position: object) -> None:
        return None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self, *, from_start: bool) -> None:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        info = os.fstat(handle.fileno())
        self._file, self._identity = handle, (info.st_dev, info.st_ino)
        self._splitter.restart()
        if not from_start:
            handle.seek(0, os.SEEK_END)

    def _read(self) -> list[SourceLine]:
        if self._file is None:
            self._open(from_start=True)  # a file that appears after the start is all new
            if self._file is None:
                self._caught_up_at = self._clock()
                return []
        lines, at_end = self._drain()
        if at_end:
            lines += self._follow_path()
        return lines

    def _drain(self) -> tuple[list[SourceLine], bool]:
        """Read the open file up to its end, or ``MAX_POLL_BYTES``; and whether at its end."""
        assert self._file is not None
        lines: list[SourceLine] = []
        read = 0
        while read < MAX_POLL_BYTES:
            chunk = self._file.read(READ_CHUNK_BYTES)
            if not chunk:
                self._caught_up_at = self._clock()
                return lines, True
            read += len(chunk)
            lines += self._lines(self._splitter.feed(chunk))
        return lines, False

    def _follow_path(self) -> list[SourceLine]:
        """At the end of the open file: has the path been rotated, or the file truncated?"""
        assert self._file is not None
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            return []  # renamed, the new file not there yet: keep following the old one
        if (info.st_dev, info.st_ino) != self._identity:
            lines, _ = self._drain()  # what was written to the old file before the rename
            lines += self._lines(self._splitter.flush())
            self.close()
            self.rotations += 1
            self._open(from_start=True)
            if self._file is not None:
                lines += self._drain()[0]
            return lines
        if info.st_size < self._file.tell():
            lines = self._lines(self._splitter.flush())
            self._file.seek(0)
            self._splitter.restart()
            self.truncations += 1
            return lines + self._drain()[0]
        return []

    def _lines(self, decoded: list[tuple[int, str]]) -> list[SourceLine]:
        return [SourceLine(number, text, self.name) for number, text in decoded]


class StreamSource:
    """Lines of a binary stream (standard input) read on a thread, until it ends.

    Args:
        stream: The stream, e.g. ``sys.stdin.buffer``.
        name: How the source is named in windows ("-").
        max_line_bytes: Longer lines are skipped (and counted).
        clock: Monotonic seconds (a parameter for tests).
    """

    kind: WatchSourceKind = "stdin"

    def __init__(
        self,
        stream: BinaryIO,
        name: str = "-",
        max_line_bytes: int = MAX_LINE_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.stats = ReadStats()
        self._splitter = LineSplitter(self.stats, max_line_bytes)
        # Bounded: a reader far ahead of the watcher waits instead of filling memory.
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=10_000)
        self._ended = False
        self._clock = clock
        self._caught_up_at = clock()
        self._reader = threading.Thread(
            target=self._read, args=(stream,), name="watch-stdin", daemon=True
        )
        self._reader.start()

    @property
    def exhausted(self) -> bool:
        return self._ended

    def poll(self, timeout: float) -> list[SourceLine]:
        if self._ended:
            return []
        try:
            item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            self._caught_up_at = self._clock()
            return []
        chunks: list[bytes] = []
        while item is not None:
            chunks.append(item)
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                self._caught_up_at = self._clock()
                break
        else:
            self._ended = True
        decoded = self._splitter.feed(b"".join(chunks))
        if self._ended:
            decoded += self._splitter.flush()
        return [SourceLine(number, text, "stdin") for number, text in decoded]

    def lag_seconds(self) -> float:
        """Seconds since the stream last had nothing waiting (0 right after)."""
        return max(0.0, self._clock() - self._caught_up_at)

    def checkpoint(self) -> object:
        return None

    def commit(self, position: object) -> None:
        return None

    def close(self) -> None:
        return None  # the reader thread is a daemon blocked on the stream

    def _read(self, stream: BinaryIO) -> None:
        try:
            while True:
                chunk = stream.readline(READ_CHUNK_BYTES)
                if not chunk:
                    break
                self._queue.put(chunk)
        except (OSError, ValueError):
            pass  # closed under us: the end of the stream
        finally:
            self._queue.put(None)
