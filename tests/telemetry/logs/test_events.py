"""Log events to raw-row fields: Vigil's shape, any other format, and stable template ids."""

import json
from pathlib import Path
from typing import Any

import pytest

from contracts.store import ObjectStore
from contracts.telemetry import TEMPLATE_MINER_STATE_PATH
from telemetry.logs.events import (
    EVENT_COLUMNS,
    LogEvent,
    LogEventParser,
    mine_template_ids,
    parse_log_message,
)
from telemetry.logs.state import load_miner, save_miner
from telemetry.logs.templates import LogTemplateMiner


def vigil(level: str, message: str, **metadata: object) -> str:
    """An event as Vigil's services and the simulator write it to CloudWatch."""
    return json.dumps({"level": level, "message": message, "metadata": metadata})


def test_vigil_shaped_events_keep_their_fields_and_get_a_template():
    parser = LogEventParser(LogTemplateMiner())
    first = parser.parse(vigil("ERROR", "disk full on /dev/xvda1: 100% used", disk="xvda"))
    again = parser.parse(vigil("ERROR", "disk full on /dev/xvdb1: 100% used"))
    assert first == LogEvent(
        "ERROR", None, "disk full on /dev/xvda1: 100% used", '{"disk": "xvda"}', False, 1
    )
    assert again.template_id == first.template_id  # the path is a variable
    assert parser.parse(vigil("INFO", "user alice logged in")).template_id == 2


@pytest.mark.parametrize(
    ("text", "level", "component", "message"),
    [
        # syslog with a priority: the level is its severity (3 = error)
        ("<11>Jan  5 10:00:00 web1 sshd[123]: error: could not load host key", "ERROR", "sshd",
         "error: could not load host key"),
        # a Java header; the stack trace stays in the message
        ("2024-01-05 10:00:00,123 ERROR [main] com.acme.Billing: charge failed\n\tat x.y(Z.java:1)",
         "ERROR", "com.acme.Billing", "charge failed\n\tat x.y(Z.java:1)"),
        # an access log line: the status decides the level
        ('10.0.0.7 - - [05/Jan/2024:10:00:00 +0000] "GET /api/v1/cart HTTP/1.1" 503 12',
         "ERROR", None, "GET /api/v1/cart HTTP/1.1 503"),
        # JSON under other key names
        ('{"severity": "warning", "msg": "queue depth 812", "logger": "worker.pool"}', "WARN",
         "worker.pool", "queue depth 812"),
        # Vigil's shape with a level outside LOG_LEVELS: the parser still reads it
        ('{"level": "NOTICE", "message": "odd level"}', "INFO", None, "odd level"),
    ],
)  # fmt: skip
def test_events_in_other_formats_are_parsed_not_kept_raw(
    text: str, level: str, component: str | None, message: str
):
    event = LogEventParser(LogTemplateMiner(), default_year=2024).parse(text)
    assert (event.level, event.component, event.message) == (level, component, message)
    assert not event.parse_error
    assert event.template_id == 1


@pytest.mark.parametrize(
    "text",
    [
        "plain text with no level at all",
        '{"message": "no level"}',
        "Jan  5 10:00:00 web1 sshd[123]: Accepted publickey for bob from 10.0.0.1 port 22 ssh2",
        "",
        "\x01\x02 binary-looking \ufffd garbage \x7f",
        "x" * 200_000,
    ],
)
def test_events_without_a_level_keep_their_whole_text_flagged(text: str):
    # Intent: nothing is lost: the raw schema asks for a level on a log row unless it is
    # flagged, so the row keeps the event as it came; it still gets a template.
    event = LogEventParser(LogTemplateMiner(), default_year=2024).parse(text)
    assert event.parse_error
    assert event.level is None
    assert event.message == text
    assert event.template_id == 1


def test_a_known_level_survives_a_malformed_vigil_event():
    event = LogEventParser(LogTemplateMiner()).parse('{"level": "INFO"}')
    assert (event.level, event.message, event.parse_error) == ("INFO", '{"level": "INFO"}', True)
    assert parse_log_message('{"level": "INFO"}') == ("INFO", '{"level": "INFO"}', None, True)


def test_parse_all_gives_one_column_per_raw_field_in_event_order():
    texts = [vigil("INFO", "started"), "plain", vigil("WARN", "slow request took 900ms")]
    columns = LogEventParser(LogTemplateMiner()).parse_all(texts)
    assert tuple(columns) == EVENT_COLUMNS
    assert columns["level"] == ["INFO", None, "WARN"]
    assert columns["parse_error"] == [False, True, False]
    assert columns["template_id"] == [1, 2, 3]


def test_the_simulators_path_mines_the_same_ids_as_the_exporters():
    messages = ["GET /a completed 200 in 12ms", "GET /b completed 404 in 7ms", "cache miss"]
    exporter = LogEventParser(LogTemplateMiner())
    exported = [exporter.parse(vigil("INFO", m)).template_id for m in messages]
    assert mine_template_ids(messages, LogTemplateMiner()) == exported


def test_template_ids_survive_a_restart_through_the_object_store(tmp_path: Path):
    store = ObjectStore.from_uri(str(tmp_path))
    texts = [
        vigil("INFO", "order 17 created for user_4"),
        "<11>Jan  5 10:00:00 web1 sshd[123]: error: could not load host key",
        vigil("ERROR", "connection to payments-api:5432 refused"),
    ]
    first = LogEventParser(load_miner(store, TEMPLATE_MINER_STATE_PATH))
    ids = [first.parse(text).template_id for text in texts]
    save_miner(first.miner, store, TEMPLATE_MINER_STATE_PATH)

    later = LogEventParser(load_miner(store, TEMPLATE_MINER_STATE_PATH))
    assert [later.parse(text).template_id for text in reversed(texts)] == ids[::-1]
    new = later.parse(vigil("WARN", "disk usage at 91% on /dev/nvme0n1p1")).template_id
    assert new not in ids  # a new template never takes an id in use


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"level": "ERROR", "message": "disk full", "metadata": {"disk": "/dev/xvda"}}',
            ("ERROR", "disk full", '{"disk": "/dev/xvda"}', False),
        ),
        ('{"level": "warn", "message": "slow"}', ("WARN", "slow", None, False)),
        ("kernel: oom-killer invoked", (None, "kernel: oom-killer invoked", None, True)),
        ('["not", "an", "object"]', (None, '["not", "an", "object"]', None, True)),
        ('{"message": "no level"}', (None, '{"message": "no level"}', None, True)),
        ('{"level": "INFO"}', ("INFO", '{"level": "INFO"}', None, True)),
        (
            '{"level": "INFO", "message": "x", "metadata": "text"}',
            ("INFO", '{"level": "INFO", "message": "x", "metadata": "text"}', None, True),
        ),
        (
            '{"level": "VERBOSE", "message": "x"}',
            (None, '{"level": "VERBOSE", "message": "x"}', None, True),
        ),
    ],
)
def test_parse_log_message_keeps_malformed_text_whole(text: str, expected: tuple[Any, ...]):
    assert tuple(parse_log_message(text)) == expected
