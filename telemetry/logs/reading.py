"""Bytes of a log file to numbered text lines, surviving whatever the file holds.

Every problem is counted in ``ReadStats`` and costs at most its own line: a line longer than
``max_line_bytes`` is skipped without being held in memory, a line of binary (NUL bytes, many
control bytes, or mostly invalid UTF-8) is skipped, and invalid UTF-8 in a text line is
replaced (U+FFFD) and the line kept. A file that is empty, or binary from its first bytes, is
refused with a ``LogInputError``.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAX_LINE_BYTES = 1 << 20  # 1 MiB: longer "lines" are dumps, not log records
BINARY_SAMPLE_BYTES = 8192
# NUL and the control bytes other than tab, CR, LF, FF, VT and ESC (colour codes): many of
# them mark binary data.
_CONTROL_BYTES = bytes(byte for byte in range(32) if byte not in b"\t\n\r\x0b\x0c\x1b")


class LogInputError(ValueError):
    """The input is not a text log at all (empty, or binary); the message says which."""


@dataclass
class ReadStats:
    """What reading did to the lines: how many, and how many it had to skip or repair."""

    lines: int = 0
    skipped_too_long: int = 0
    skipped_binary: int = 0
    replaced_invalid_utf8: int = 0

    @property
    def skipped(self) -> int:
        """Lines that produced no record."""
        return self.skipped_too_long + self.skipped_binary


def read_lines(
    path: Path, stats: ReadStats, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, str]]:
    """The lines of a log file, numbered from 1, without their line ending.

    Args:
        path: The log file.
        stats: Counters this function updates as it reads.
        max_line_bytes: Lines longer than this are skipped (and counted).

    Yields:
        ``(line number, text)`` for every line kept.

    Raises:
        LogInputError: When the file is empty or starts with binary data.
        OSError: When the file cannot be opened.
    """
    with path.open("rb") as stream:
        head = stream.read(BINARY_SAMPLE_BYTES)
        if not head:
            raise LogInputError(f"{path} is empty: there is no log line to parse")
        if _file_looks_binary(head):
            raise LogInputError(
                f"{path} looks binary (many NUL or control bytes in its first {len(head)} "
                "bytes); expected a text log"
            )
        stream.seek(0)
        yield from iter_lines(stream, stats, max_line_bytes)


def iter_lines(
    stream: BinaryIO, stats: ReadStats, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, str]]:
    """The lines of a binary stream, numbered from 1 (see ``read_lines``).

    Args:
        stream: An open binary stream.
        stats: Counters this function updates as it reads.
        max_line_bytes: Lines longer than this are skipped (and counted).

    Yields:
        ``(line number, text)`` for every line kept.
    """
    number = 0
    while True:
        raw = stream.readline(max_line_bytes + 1)
        if not raw:
            return
        number += 1
        stats.lines += 1
        if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
            stats.skipped_too_long += 1
            _skip_rest_of_line(stream, max_line_bytes)
            continue
        raw = raw.rstrip(b"\r\n")
        if _looks_binary(raw):
            stats.skipped_binary += 1
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            if text.count("\ufffd") * 4 > len(text):  # mostly undecodable: binary, not text
                stats.skipped_binary += 1
                continue
            stats.replaced_invalid_utf8 += 1
        yield number, text


def _skip_rest_of_line(stream: BinaryIO, chunk_bytes: int) -> None:
    while True:
        chunk = stream.readline(chunk_bytes)
        if not chunk or chunk.endswith(b"\n"):
            return


def _looks_binary(line: bytes) -> bool:
    """A NUL byte, or more than 10% control bytes (a stray one in a text line is kept)."""
    return b"\x00" in line or _control_share(line) > 0.1


def _file_looks_binary(head: bytes) -> bool:
    """More than 5% NUL and control bytes in the first block: a binary file, where a text log
    with a line of garbage in that block stays a text log."""
    return _control_share(head) > 0.05


def _control_share(data: bytes) -> float:
    # translate(None, delete) drops the control bytes: what it dropped is how many there were.
    return (len(data) - len(data.translate(None, _CONTROL_BYTES))) / max(1, len(data))
