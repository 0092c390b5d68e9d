"""Bad input: each problem is refused with a clear error or counted, and costs only itself."""

from pathlib import Path

import pytest

from telemetry.logs.detection import parse_file
from telemetry.logs.reading import LogInputError, ReadStats, read_lines

GOOD = b"2024-01-01 00:00:00,000 INFO [main] app: line %d\n"


def test_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    with pytest.raises(LogInputError, match="is empty"):
        parse_file(path)


def test_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "core.dump"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(LogInputError, match="looks binary"):
        parse_file(path)


def test_a_10_mb_line_is_skipped_and_its_neighbours_kept(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(GOOD % 1 + b"x" * 10_000_000 + b"\n" + GOOD % 3)
    parsed = parse_file(path)
    assert [(r.line, r.message) for r in parsed.records] == [(1, "line 1"), (3, "line 3")]
    assert (parsed.reading.lines, parsed.reading.skipped_too_long) == (3, 1)


def test_binary_garbage_inside_a_text_log_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(GOOD % 1 + b"\x00\x01\x02\xff\xfe garbage \x00\n" + GOOD % 3)
    parsed = parse_file(path)
    assert [r.line for r in parsed.records] == [1, 3]
    assert parsed.reading.skipped_binary == 1


def test_invalid_utf8_is_repaired_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(GOOD % 1 + b"2024-01-01 00:00:01,000 WARN [main] app: caf\xe9 closed\n")
    parsed = parse_file(path)
    assert parsed.records[1].message == "caf\ufffd closed"
    assert parsed.records[1].level == "WARN"
    assert parsed.reading.replaced_invalid_utf8 == 1


def test_crlf_line_endings_and_a_missing_last_newline(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"first\r\nsecond\r\nthird")
    stats = ReadStats()
    assert list(read_lines(path, stats)) == [(1, "first"), (2, "second"), (3, "third")]
    assert stats.skipped == 0


def test_a_stray_control_character_keeps_its_line(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"a long enough line with one bell \x07 in it\n")
    assert [text for _, text in read_lines(path, ReadStats())] == [
        "a long enough line with one bell \x07 in it"
    ]


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.log"):
        parse_file(tmp_path / "absent.log")
