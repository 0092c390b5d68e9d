"""Each built-in format on lines as real programs write them; custom LogPAI and regex formats."""

from datetime import UTC, datetime

import pytest

from telemetry.logs.custom import custom_format
from telemetry.logs.formats import LineFormat, builtin_formats
from telemetry.logs.records import LogRecord, normalise_level

YEAR = 2024


def parse_with(name: str, line: str) -> LogRecord:
    formats: dict[str, LineFormat] = {f.name: f for f in builtin_formats(YEAR)}
    record = formats[name].parse(line, 7)
    assert record is not None, f"{name} refused {line!r}"
    assert record.line == 7
    return record


@pytest.mark.parametrize(
    ("line", "timestamp", "level", "component", "message"),
    [
        (
            '{"time": "2024-03-01T10:00:00Z", "level": "warn", "msg": "disk low", "logger": "db"}',
            datetime(2024, 3, 1, 10, tzinfo=UTC),
            "WARN",
            "db",
            "disk low",
        ),
        (
            '{"@timestamp": "2024-03-01T12:00:00+02:00", "severity": "ERROR", "message": "x",'
            ' "source": "api"}',
            datetime(2024, 3, 1, 10, tzinfo=UTC),
            "ERROR",
            "api",
            "x",
        ),
        (  # pino: epoch milliseconds and numeric levels
            '{"ts": 1709287200000, "lvl": 50, "log": "boom", "component": "worker"}',
            datetime(2024, 3, 1, 10, tzinfo=UTC),
            "ERROR",
            "worker",
            "boom",
        ),
        (  # ECS: nested objects
            '{"@timestamp": "2024-03-01T10:00:00.5Z", "log": {"level": "info", "logger": "app"},'
            ' "message": "started"}',
            datetime(2024, 3, 1, 10, 0, 0, 500000, tzinfo=UTC),
            "INFO",
            "app",
            "started",
        ),
    ],
)
def test_json_lines_under_any_key_names(
    line: str, timestamp: datetime, level: str, component: str, message: str
) -> None:
    record = parse_with("json", line)
    assert (record.timestamp, record.level, record.component, record.message) == (
        timestamp,
        level,
        component,
        message,
    )


def test_json_keeps_other_keys_as_metadata() -> None:
    record = parse_with("json", '{"msg": "hi", "user": {"id": 7}, "tags": ["a"], "ok": true}')
    assert record.metadata == {"user.id": "7", "tags": '["a"]', "ok": "true"}
    assert record.timestamp is None


def test_json_that_is_not_an_object_is_refused() -> None:
    json_format = builtin_formats(YEAR)[0]
    assert json_format.parse("[1, 2]", 1) is None
    assert json_format.parse("{not json", 1) is None


def test_syslog_rfc3164() -> None:
    record = parse_with(
        "syslog3164", "<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed on /dev/pts/8"
    )
    assert record.timestamp == datetime(YEAR, 10, 11, 22, 14, 15, tzinfo=UTC)
    assert record.level == "CRITICAL"  # priority 34: facility 4, severity 2
    assert record.component == "su"
    assert record.metadata["host"] == "mymachine"
    assert record.metadata["pid"] == "230"
    assert record.message == "'su root' failed on /dev/pts/8"


def test_syslog_rfc3164_without_priority_tag_or_pid() -> None:
    record = parse_with("syslog3164", "Jun  9 06:06:20 combo kernel: Linux version 2.6.5-1.358")
    assert record.timestamp == datetime(YEAR, 6, 9, 6, 6, 20, tzinfo=UTC)
    assert (record.component, record.level) == ("kernel", None)
    assert record.message == "Linux version 2.6.5-1.358"


def test_syslog_rfc3164_relayed_with_a_prefix() -> None:
    record = parse_with(
        "syslog3164",
        "- 1131566461 2005.11.09 dn228 Nov 9 12:01:01 dn228/dn228 crond(pam_unix)[2915]: "
        "session closed for user root",
    )
    assert record.component == "crond(pam_unix)"
    assert record.message == "session closed for user root"
    assert record.metadata["relay"].split() == ["-", "1131566461", "2005.11.09", "dn228"]


def test_syslog_rfc5424() -> None:
    record = parse_with(
        "syslog5424",
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473"
        ' iut="3" eventSource="Application"] An application event log entry',
    )
    assert record.timestamp == datetime(2003, 10, 11, 22, 14, 15, 3000, tzinfo=UTC)
    assert record.level == "INFO"  # severity 5, notice
    assert record.component == "evntslog"
    assert record.metadata["msgid"] == "ID47"
    assert record.metadata["structured_data"].startswith("[exampleSDID@32473")
    assert record.message == "An application event log entry"


@pytest.mark.parametrize(
    ("line", "level", "agent"),
    [
        (  # Apache common log format
            '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326',
            "INFO",
            None,
        ),
        (  # Nginx / Apache combined
            '203.0.113.9 - - [10/Oct/2000:13:55:36 -0700] "POST /api/v1/items HTTP/1.1" 503 0 '
            '"https://example.com/" "Mozilla/5.0 (X11; Linux x86_64)"',
            "ERROR",
            "Mozilla/5.0 (X11; Linux x86_64)",
        ),
    ],
)
def test_http_access_logs(line: str, level: str, agent: str | None) -> None:
    record = parse_with("http_access", line)
    assert record.timestamp == datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC)
    assert record.level == level
    assert record.metadata.get("agent") == agent
    assert record.message == f"{record.metadata['request']} {record.metadata['status']}"


def test_apache_error_log_22_and_24() -> None:
    old = parse_with(
        "apache_error", "[Sun Dec 04 04:47:44 2005] [error] mod_jk child workerEnv in error state 6"
    )
    assert (old.level, old.message) == ("ERROR", "mod_jk child workerEnv in error state 6")
    new = parse_with(
        "apache_error",
        "[Wed Oct 11 14:32:52.123456 2000] [core:warn] [pid 1234:tid 5678] [client 1.2.3.4:5678]"
        " AH00124: Request exceeded the limit",
    )
    assert new.timestamp == datetime(2000, 10, 11, 14, 32, 52, 123456, tzinfo=UTC)
    assert (new.level, new.component) == ("WARN", "core")
    assert new.metadata["client"] == "1.2.3.4:5678"
    assert new.message == "AH00124: Request exceeded the limit"


def test_nginx_error_log() -> None:
    record = parse_with(
        "nginx_error",
        '2023/01/05 10:11:12 [crit] 1234#0: *9 open() "/var/www/x" failed (13: Permission denied)',
    )
    assert record.timestamp == datetime(2023, 1, 5, 10, 11, 12, tzinfo=UTC)
    assert record.level == "CRITICAL"
    assert record.message == 'open() "/var/www/x" failed (13: Permission denied)'


@pytest.mark.parametrize(
    ("line", "level", "component", "message", "thread"),
    [
        (  # log4j
            "2015-10-18 18:01:47,978 INFO [main] org.apache.hadoop.MRAppMaster: Created it",
            "INFO",
            "org.apache.hadoop.MRAppMaster",
            "Created it",
            "main",
        ),
        (  # logback, thread before the level
            "2024-02-01 09:00:00.123 [pool-1-thread-3] ERROR c.e.Service - Call failed",
            "ERROR",
            "c.e.Service",
            "Call failed",
            None,
        ),
        (  # Python logging: asctime - name - levelname - message
            "2024-02-01 09:00:00,123 - payments.db - WARNING - retrying",
            "WARN",
            "payments.db",
            "retrying",
            None,
        ),
        (  # Zookeeper: nested brackets in the thread
            "2015-07-29 17:41:44,747 - INFO  [QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:"
            "FastLeaderElection@774] - Notification time out: 3200",
            "INFO",
            None,
            "Notification time out: 3200",
            "QuorumPeer[myid=1]/0:0:0:0:0:0:0:0:2181:FastLeaderElection@774",
        ),
        (  # OpenStack (oslo.log): logger, then a request context in brackets
            "nova-api.log.1.2017-05-16_13:53:08 2017-05-16 00:00:00.008 25746 INFO "
            "nova.osapi_compute.wsgi.server [req-38101a0b - - -] 10.11.10.1 "
            '"GET /v2/servers HTTP/1.1" status: 200',
            "INFO",
            "nova.osapi_compute.wsgi.server",
            '10.11.10.1 "GET /v2/servers HTTP/1.1" status: 200',
            None,
        ),
        (  # BGL: the component is the word before the level
            "1117838570 2005.06.03 R02-M1-N0-C:J12-U11 2005-06-03-15.42.50.675872 "
            "R02-M1-N0-C:J12-U11 RAS KERNEL INFO instruction cache parity error corrected",
            "INFO",
            "KERNEL",
            "instruction cache parity error corrected",
            None,
        ),
    ],
)
def test_header_ending_in_a_level(
    line: str, level: str, component: str | None, message: str, thread: str | None
) -> None:
    record = parse_with("leveled", line)
    assert record.timestamp is not None
    assert (record.level, record.component, record.message) == (level, component, message)
    assert record.metadata.get("thread") == thread


def test_level_word_inside_a_sentence_does_not_split_it() -> None:
    formats = {f.name: f for f in builtin_formats(YEAR)}
    assert formats["leveled"].parse("Connection closed ERROR code was seen", 1) is None


@pytest.mark.parametrize(
    ("name", "line", "component", "message"),
    [
        (
            "logcat",
            "03-17 16:13:38.811  1702  2395 D WindowManager: printFreezingDisplayLogs",
            "WindowManager",
            "printFreezingDisplayLogs",
        ),
        ("python_basic", "WARNING:root:low disk space", "root", "low disk space"),
        (
            "pipe_delimited",
            "20171223-22:15:29:606|Step_LSC|30002312|onStandStepChanged 3579",
            "Step_LSC",
            "onStandStepChanged 3579",
        ),
    ],
)
def test_other_common_formats(name: str, line: str, component: str, message: str) -> None:
    record = parse_with(name, line)
    assert (record.component, record.message) == (component, message)


def test_bracketed_time_and_program() -> None:
    record = parse_with(
        "bracketed", "[10.30 16:49:06] chrome.exe - proxy.example.com:5070 open through proxy"
    )
    assert record.component == "chrome.exe"
    assert record.message == "proxy.example.com:5070 open through proxy"


def test_logpai_header_format() -> None:
    log_format = custom_format("<Date> <Time> <Pid> <Level> <Component>: <Content>", YEAR)
    record = log_format.parse(
        "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating", 3
    )
    assert record is not None
    assert record.timestamp == datetime(2008, 11, 9, 20, 36, 15, tzinfo=UTC)
    assert (record.level, record.component) == ("INFO", "dfs.DataNode$PacketResponder")
    assert record.metadata["Pid"] == "148"
    assert record.message == "PacketResponder 1 terminating"
    assert log_format.parse("a line in another format", 4) is None


def test_named_group_regex_format() -> None:
    log_format = custom_format(
        r"(?P<ts>\d+) \| (?P<severity>\w+) \| (?P<service>[\w-]+) \| (?P<msg>.*)", YEAR
    )
    record = log_format.parse("1709287200 | fatal | billing-api | out of memory", 1)
    assert record is not None
    assert record.timestamp == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert (record.level, record.component, record.message) == (
        "CRITICAL",
        "billing-api",
        "out of memory",
    )


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("(?P<message>.*", "not a valid regex"),
        (r"(?P<time>\S+) (?P<rest>.*)", "names no message group"),
        ("<Date> <Time> <Level>", "no <Content> placeholder"),
        ("<Date> (<Content>", "not a valid pattern"),
    ],
)
def test_bad_custom_formats_are_refused_clearly(spec: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        custom_format(spec, YEAR)


@pytest.mark.parametrize(
    ("raw", "level"),
    [("warning", "WARN"), ("E", "ERROR"), ("[notice]", "INFO"), (2, "CRITICAL"), (20, "DEBUG")],
)
def test_levels_are_normalised(raw: object, level: str) -> None:
    assert normalise_level(raw) == level


def test_unknown_level_is_none() -> None:
    assert normalise_level("combo") is None
    assert normalise_level(True) is None
