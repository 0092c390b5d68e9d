"""Token windows: within budget, never splitting a record, overlapping, collapsing repeats."""

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from telemetry.logs.analysis.tokens import ApproximateTokenizer, tokenize_url
from telemetry.logs.analysis.windows import WindowBuilder, window_text
from telemetry.logs.records import LogRecord
from telemetry.logs.templates import MinedRecord, Template

START = datetime(2026, 3, 2, 10, tzinfo=UTC)


def mined(line: int, template_id: int, message: str) -> MinedRecord:
    record = LogRecord(line, message, START + timedelta(seconds=line), "INFO")
    return MinedRecord(record, Template(template_id, f"template {template_id}"), ())


def chatty_log(records: int, templates: int) -> list[MinedRecord]:
    """Records cycling through ``templates`` templates, each message a few dozen tokens."""
    return [
        mined(n, n % templates + 1, f"event number {n % templates} happened to worker-{n} ok")
        for n in range(1, records + 1)
    ]


def test_approximate_tokens_count_letters_by_four_and_digits_one_by_one() -> None:
    tokenizer = ApproximateTokenizer()
    assert tokenizer.count("") == 0
    assert tokenizer.count("password") == 2  # 8 letters
    assert tokenizer.count("Failed password") == 2 + 2  # the space before a word is free
    assert tokenizer.count("port 38926") == 1 + 1 + 5  # the space before digits is not
    assert tokenizer.count("a\n\nb") == 3


def test_tokenize_url_is_the_servers_root_route() -> None:
    assert tokenize_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/tokenize"
    assert tokenize_url("http://vllm:8000/v1/") == "http://vllm:8000/tokenize"
    assert tokenize_url("http://host/llm") == "http://host/llm/tokenize"


@pytest.mark.parametrize("overlap", [0.0, 0.1, 0.3])
def test_windows_stay_within_budget_cover_every_record_and_never_split_one(overlap: float) -> None:
    records = chatty_log(600, 40)
    tokenizer = ApproximateTokenizer()
    windows = WindowBuilder(tokenizer, 300, overlap, 500).build(records)
    assert len(windows) >= 2
    assert windows[0].start == 0
    assert windows[-1].end == len(records)
    for before, after in pairwise(windows):
        assert after.start == before.end - after.overlap_records  # contiguous, on records
        assert after.start > before.start  # always progresses
        if overlap:
            assert after.overlap_records >= 1
        else:
            assert after.overlap_records == 0
    for window in windows:
        assert window.tokens <= 300
        assert window.tokens == tokenizer.count(window_text(window))
        assert sum(window.counts.values()) == window.records


def test_repeats_are_collapsed_into_one_entry_with_count_and_line_span() -> None:
    records = [mined(n, 1, f"GET /health 200 in {n}ms") for n in range(1, 201)]
    records.append(mined(201, 2, "ERROR disk full on /var"))
    [window] = WindowBuilder(ApproximateTokenizer(), 1024, 0.1, 500).build(records)
    assert [entry.count for entry in window.entries] == [200, 1]
    assert window_text(window).splitlines()[0].startswith("L1-200 x200 10:00:01 INFO GET /health")
    assert window.records == 201
    assert window.tokens < 60


def test_a_window_also_closes_at_its_record_limit() -> None:
    records = [mined(n, 1, "heartbeat ok") for n in range(1, 1001)]
    windows = WindowBuilder(ApproximateTokenizer(), 1024, 0.1, 250).build(records)
    assert len(windows) >= 4
    assert all(window.records <= 250 for window in windows)


def test_a_record_longer_than_the_budget_is_cut_short_in_a_window_of_its_own() -> None:
    huge = mined(2, 2, "x " * 5000 + "\n  at frame one\n  at frame two\n  at frame three")
    records = [mined(1, 1, "before"), huge, mined(3, 3, "after")]
    windows = WindowBuilder(ApproximateTokenizer(), 100, 0.0, 500).build(records)
    assert [(w.start, w.end) for w in windows] == [(0, 1), (1, 2), (2, 3)]
    text = window_text(windows[1])
    assert "…" in text
    assert "(+1 more lines)" in text  # two continuation lines shown, the third counted
