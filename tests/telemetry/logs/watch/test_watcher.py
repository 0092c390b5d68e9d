"""Windows of a real file, closed by hand: what is an anomaly, what is not, and what a
restarted watcher remembers."""

from pathlib import Path

import pytest

from contracts.log_watch import LogWatchWindow
from contracts.settings import Settings
from telemetry.logs.watch.settings import LogWatchSettings
from telemetry.logs.watch.sources import FileTail
from telemetry.logs.watch.watcher import StateFiles, Watcher
from tests.telemetry.logs.watch.conftest import BURST_TEMPLATE, append, error_burst, normal_traffic


def window_of(watcher: Watcher, log: Path, text: str) -> LogWatchWindow:
    """Append ``text``, let the watcher read it, and close the window."""
    append(log, text)
    watcher.feed(watcher.source.poll(0))
    return watcher.close_window()


def kinds(window: LogWatchWindow) -> set[tuple[str, str]]:
    return {(a.kind, a.template) for a in window.anomalies}


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "app.log"
    path.write_text("")
    return path


def test_known_traffic_is_quiet_and_a_new_error_burst_is_reported_where_it_happens(
    log: Path,
) -> None:
    watcher = Watcher(FileTail(log), LogWatchSettings())
    first = window_of(watcher, log, normal_traffic(0))
    # Started without templates: the first window only learns what is usual.
    assert first.learning
    assert first.anomalies == []
    assert {t.new for t in first.templates} == {True}
    quiet = [window_of(watcher, log, normal_traffic(seed)) for seed in range(1, 6)]
    for window in quiet:
        assert not window.learning
        assert window.anomalies == [], window.anomalies
        assert window.records == 40
        assert [t.count for t in window.templates] == [20, 20]
    burst = window_of(watcher, log, normal_traffic(6) + error_burst(7))
    assert kinds(burst) == {("new_template", BURST_TEMPLATE), ("error_burst", BURST_TEMPLATE)}
    new = next(a for a in burst.anomalies if a.kind == "new_template")
    assert (new.severity, new.level, new.count, new.expected) == ("high", "ERROR", 25, 0.0)
    assert "refused: too many clients" in new.examples[0].text
    assert new.examples[0].origin == str(log)
    # Examples cite the line in the file: 6 windows of 40 lines, then 40 usual lines.
    assert new.examples[0].line == 6 * 40 + 40 + 1
    assert burst.templates[0].template == BURST_TEMPLATE
    assert burst.templates[0].new
    after = window_of(watcher, log, normal_traffic(8))
    assert after.anomalies == []


def test_a_known_template_far_above_its_usual_count_spikes(log: Path) -> None:
    watcher = Watcher(FileTail(log), LogWatchSettings())
    for seed in range(5):
        window_of(watcher, log, normal_traffic(seed))
    spike = window_of(watcher, log, normal_traffic(5, requests=200))
    spikes = [a for a in spike.anomalies if a.kind == "spike"]
    assert len(spikes) == 2  # both templates went from 20 to 200 records
    assert {a.count for a in spikes} == {200}
    assert all(15.0 < a.expected <= 20.0 for a in spikes)  # ~20 (Drain learns in window 0)
    # Twice the usual is within what the stream does: no spike.
    watcher = Watcher(FileTail(log), LogWatchSettings())
    for seed in range(5):
        window_of(watcher, log, normal_traffic(seed))
    assert window_of(watcher, log, normal_traffic(5, requests=40)).anomalies == []


def test_thresholds_come_from_the_settings(log: Path) -> None:
    strict = LogWatchSettings(burst_min_count=30)
    watcher = Watcher(FileTail(log), strict)
    for seed in range(3):
        window_of(watcher, log, normal_traffic(seed))
    window = window_of(watcher, log, error_burst(3, count=25))
    assert {a.kind for a in window.anomalies} == {"new_template"}  # 25 errors < 30


def test_a_restarted_watcher_keeps_its_templates_and_history(log: Path, tmp_path: Path) -> None:
    files = StateFiles.at(str(tmp_path / "state" / "miner.json"), Settings())
    watcher = Watcher(FileTail(log), LogWatchSettings(), state=files)
    for seed in range(4):
        window_of(watcher, log, normal_traffic(seed))
    watcher.state.save(watcher.miner, watcher.detector.history)  # type: ignore[union-attr]
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "miner.json",
        "miner.watch.json",
    ]
    miner, history = files.load()
    restarted = Watcher(FileTail(log), LogWatchSettings(), miner=miner, history=history)
    window = window_of(restarted, log, normal_traffic(10))
    # Not learning, nothing new: the templates and their rates came back with the state.
    assert not window.learning
    assert window.anomalies == []
    assert window.index == 0
    assert restarted.detector.history.windows == 5
    spike = window_of(restarted, log, normal_traffic(11, requests=200))
    assert {a.kind for a in spike.anomalies} == {"spike"}


def test_a_state_made_by_logs_parse_marks_its_templates_known(log: Path, tmp_path: Path) -> None:
    """``vigil logs parse --state`` writes the miner only: its templates are known, so the
    watcher does not learn, and reports a template the state does not have."""
    from telemetry.logs.templates import LogTemplateMiner

    miner = LogTemplateMiner()
    for line in normal_traffic(0).splitlines():
        miner.add(line.split(": ", 1)[1])
    watcher = Watcher(FileTail(log), LogWatchSettings(), miner=miner)
    window = window_of(watcher, log, normal_traffic(1) + error_burst(2, count=1))
    assert not window.learning
    assert kinds(window) == {("new_template", BURST_TEMPLATE)}
