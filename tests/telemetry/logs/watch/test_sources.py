"""Following a file like ``tail -F`` (real files: appended, renamed and recreated, truncated,
missing for a while) and reading a stream until it ends (a real pipe)."""

import os
from pathlib import Path

from telemetry.logs.watch.sources import FileTail, SourceLine, StreamSource


def texts(lines: list[SourceLine]) -> list[str]:
    return [line.text for line in lines]


def append(path: Path, data: str | bytes) -> None:
    with path.open("ab") as stream:
        stream.write(data.encode() if isinstance(data, str) else data)


def test_starts_at_the_end_and_returns_only_complete_lines(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("old 1\nold 2\n")
    tail = FileTail(log)
    assert tail.poll(0) == []
    append(log, "new 1\nnew 2 is being wri")
    # A line still being written is held until its newline arrives, never cut in two.
    assert texts(tail.poll(0)) == ["new 1"]
    append(log, "tten\n")
    lines = tail.poll(0)
    assert texts(lines) == ["new 2 is being written"]
    assert lines[0].origin == str(log)


def test_from_start_reads_what_the_file_holds_first(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\n")
    lines = FileTail(log, from_start=True).poll(0)
    assert [(line.number, line.text) for line in lines] == [(1, "one"), (2, "two")]


def test_survives_rename_and_a_new_file(tmp_path: Path) -> None:
    """logrotate's default: the file is renamed, the writer still finishes a line into it,
    then a new file appears under the path: every line of both is read, once, in order."""
    log = tmp_path / "app.log"
    log.write_text("")
    tail = FileTail(log)
    append(log, "before 1\n")
    assert texts(tail.poll(0)) == ["before 1"]
    append(log, "before 2\n")
    rotated = tmp_path / "app.log.1"
    log.rename(rotated)
    # Between the rename and the new file the path is missing: the old file is still read.
    append(rotated, "written after the rename\n")
    assert texts(tail.poll(0)) == ["before 2", "written after the rename"]
    append(rotated, "last words of the old file")  # no newline: flushed at the switch
    log.write_text("after 1\nafter 2\n")
    lines = tail.poll(0)
    assert texts(lines) == ["last words of the old file", "after 1", "after 2"]
    assert [line.number for line in lines[1:]] == [1, 2]  # numbered in the new file
    assert tail.rotations == 1
    append(log, "after 3\n")
    assert texts(tail.poll(0)) == ["after 3"]
    tail.close()


def test_survives_truncation(tmp_path: Path) -> None:
    """copytruncate and ``> app.log``: the file shrinks under the reader, which starts again
    from its first byte."""
    log = tmp_path / "app.log"
    log.write_text("")
    tail = FileTail(log)
    append(log, "a long line before the truncation\nanother one\n")
    assert len(tail.poll(0)) == 2
    with log.open("r+b") as stream:
        stream.truncate(0)
    append(log, "short\n")
    lines = tail.poll(0)
    assert [(line.number, line.text) for line in lines] == [(1, "short")]
    assert tail.truncations == 1
    append(log, "then more\n")
    assert texts(tail.poll(0)) == ["then more"]


def test_a_file_that_appears_later_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    tail = FileTail(log)
    assert tail.poll(0) == []
    log.write_text("first line\n")
    assert texts(tail.poll(0)) == ["first line"]


def test_binary_and_overlong_lines_cost_only_their_line(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("")
    tail = FileTail(log, max_line_bytes=64)
    append(log, b"ok 1\n\x00\x01\x02binary\x00\n" + b"x" * 100)
    assert texts(tail.poll(0)) == ["ok 1"]
    append(log, b"y" * 100 + b"\nok 2\n")
    lines = tail.poll(0)
    assert [(line.number, line.text) for line in lines] == [(4, "ok 2")]
    assert (tail.stats.skipped_binary, tail.stats.skipped_too_long) == (1, 1)


def test_a_stream_is_read_until_it_ends() -> None:
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader:
        source = StreamSource(reader)
        with os.fdopen(write_end, "wb") as writer:
            writer.write(b"one\ntwo\nthree without newline")
        lines: list[SourceLine] = []
        while not source.exhausted:
            lines += source.poll(1.0)
    assert texts(lines) == ["one", "two", "three without newline"]
    assert [line.number for line in lines] == [1, 2, 3]
