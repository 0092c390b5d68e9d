"""Format detection from a sample, per-line fallback, and multi-line records."""

from pathlib import Path

from telemetry.logs.detection import LogParser, parse_file
from telemetry.logs.records import LogRecord

JAVA_TRACE = """\
2024-02-01 09:00:00,001 INFO [main] com.example.App: starting
2024-02-01 09:00:01,002 ERROR [worker-1] com.example.Job: job 42 failed
java.lang.IllegalStateException: queue closed
\tat com.example.Queue.take(Queue.java:88)
\tat com.example.Job.run(Job.java:17)
Caused by: java.io.IOException: broken pipe
\tat com.example.Net.read(Net.java:12)
\t... 2 more
2024-02-01 09:00:02,003 INFO [main] com.example.App: stopping
"""


def parse_text(text: str, log_format: str | None = None) -> tuple[LogParser, list[LogRecord]]:
    parser = LogParser.build(log_format, default_year=2024)
    return parser, list(parser.parse(enumerate(text.splitlines(), 1)))


def test_java_stack_trace_is_one_record() -> None:
    parser, records = parse_text(JAVA_TRACE)
    assert [r.line for r in records] == [1, 2, 9]
    failed = records[1]
    assert failed.level == "ERROR"
    assert failed.first_line == "job 42 failed"
    assert failed.message.splitlines()[1:] == JAVA_TRACE.splitlines()[2:8]
    assert parser.stats.continuation_lines == 6


def test_python_traceback_is_one_record() -> None:
    text = (
        "2024-02-01 09:00:00,001 - app - ERROR - request failed\n"
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in <module>\n'
        "    main()\n"
        "ValueError: bad input\n"
        "2024-02-01 09:00:01,001 - app - INFO - next request\n"
    )
    _, records = parse_text(text)
    assert [r.line for r in records] == [1, 6]
    assert records[0].message.endswith("ValueError: bad input")


def test_detection_picks_the_format_of_most_sample_lines() -> None:
    text = "\n".join(
        f"Jun 14 15:16:0{i} combo sshd(pam_unix)[1993{i}]: check pass; user unknown"
        for i in range(5)
    )
    parser, records = parse_text(text)
    assert parser.detected is not None
    assert parser.detected.name == "syslog3164"
    assert {r.format for r in records} == {"syslog3164"}


def test_lines_the_detected_format_refuses_fall_back_per_line() -> None:
    text = (
        "Jun 14 15:16:01 combo sshd[1]: accepted\n"
        "Jun 14 15:16:02 combo sshd[2]: accepted\n"
        '{"time": "2024-06-14T15:16:03Z", "level": "error", "msg": "from a JSON logger"}\n'
        "a line in no format at all\n"
        "Jun 14 15:16:04 combo sshd[3]: accepted\n"
    )
    parser, records = parse_text(text)
    assert parser.detected is not None
    assert parser.detected.name == "syslog3164"
    assert [(r.line, r.format) for r in records] == [
        (1, "syslog3164"),
        (2, "syslog3164"),
        (3, "json"),
        (4, "plain"),
        (5, "syslog3164"),
    ]
    assert records[2].level == "ERROR"
    assert records[3].message == "a line in no format at all"


def test_plain_text_gives_a_record_per_line_even_indented() -> None:
    parser, records = parse_text("first thing happened\n  then this one\nand that\n")
    assert parser.detected is None
    assert [(r.line, r.message, r.format) for r in records] == [
        (1, "first thing happened", "plain"),
        (2, "  then this one", "plain"),
        (3, "and that", "plain"),
    ]


def test_blank_lines_make_no_record() -> None:
    _, records = parse_text('{"msg": "a"}\n\n   \n{"msg": "b"}\n')
    assert [(r.line, r.message) for r in records] == [(1, "a"), (4, "b")]


def test_a_given_format_is_tried_first_and_others_take_the_rest() -> None:
    text = "17/06/09 20:10:40 INFO spark.SecurityManager: Changing view acls to: yarn\nfree text\n"
    parser, records = parse_text(text, "<Date> <Time> <Level> <Component>: <Content>")
    assert parser.detected is not None
    assert parser.detected.name == "logpai"
    assert [(r.format, r.message) for r in records] == [
        ("logpai", "Changing view acls to: yarn"),
        ("plain", "free text"),
    ]


def test_parse_file_reports_its_counts(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_text(JAVA_TRACE)
    parsed = parse_file(path)
    assert (parsed.format, len(parsed.records), parsed.reading.lines) == ("leveled", 3, 9)
    assert parsed.parsing.by_format == {"leveled": 3}


def test_a_header_of_plain_columns_is_learned_from_the_sample() -> None:
    text = "\n".join(
        f"{134681 + i} node-{i} unix.hw state_change.unavailable {1077804742 + i} 1 "
        f"Component State Change: Component alt{i} is unavailable"
        for i in range(10)
    )
    parser, records = parse_text(text)
    assert parser.detected is not None
    assert parser.detected.name == "columns"
    assert records[0].message == "Component State Change: Component alt0 is unavailable"
    assert records[0].timestamp is not None
    assert records[0].timestamp.year == 2004


def test_prose_learns_no_header() -> None:
    parser, records = parse_text("the quick brown fox\njumps over 3 lazy dogs\nand sleeps\n")
    assert parser.detected is None
    assert records[1].message == "jumps over 3 lazy dogs"
