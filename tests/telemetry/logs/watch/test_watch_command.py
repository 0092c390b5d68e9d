"""``vigil logs watch`` as a user runs it: the console script in a subprocess, a real log file
written to (rotated and truncated) while it watches, its metrics scraped by a real
Prometheus."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import httpx
import pytest
import yaml

from contracts.log_watch import LogWatchWindow
from tests.telemetry.logs.watch.conftest import BURST_TEMPLATE, append, error_burst, normal_traffic
from vigil.dashboard_check import WATCHER_DASHBOARD, panel_queries, queries_without_data
from vigil.processes import ServerProcess, free_port, start_server

VIGIL = str(Path(sys.executable).parent / "vigil")


class Watch:
    """A running ``vigil logs watch --format jsonl``, its windows read as they come."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [VIGIL, "logs", "watch", *args, "--format", "jsonl"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "VIGIL_LOGS_WATCH_POLL_INTERVAL_S": "0.05"},
        )
        self.windows: list[LogWatchWindow] = []
        self._lines: Queue[str | None] = Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next_window(self, timeout: float = 60.0) -> LogWatchWindow | None:
        """The next window (None once the command has ended)."""
        try:
            line = self._lines.get(timeout=timeout)
        except Empty:
            raise AssertionError(f"no window within {timeout} s: {self.stderr()}") from None
        if line is None:
            return None
        window = LogWatchWindow.model_validate_json(line)
        self.windows.append(window)
        return window

    def stop(self) -> int:
        """SIGTERM, then every window still to come; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        while self.next_window() is not None:
            pass
        return self.process.wait(timeout=60)

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        assert self.process.stderr is not None
        return self.process.stderr.read()


@pytest.fixture
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, int]]:
    """A real Prometheus scraping the port the watcher will serve its metrics on."""
    root = tmp_path_factory.mktemp("prometheus")
    port, target = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": "logs-watch", "static_configs": [{"targets": [f"127.0.0.1:{target}"]}]}
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    argv = [
        "prometheus",
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    server = start_server("prometheus", argv, f"http://127.0.0.1:{port}", "/-/ready", root)
    yield server, target
    server.stop()


def query(prometheus: ServerProcess, expr: str) -> float | None:
    answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": expr}).json()
    results: list[dict[str, Any]] = answer["data"]["result"]
    return float(results[0]["value"][1]) if results else None


@pytest.mark.slow
@pytest.mark.e2e
def test_watch_reports_a_new_error_burst_where_it_happens_through_rotation_and_truncation(
    tmp_path: Path, prometheus: tuple[ServerProcess, int]
) -> None:
    server, metrics_port = prometheus
    log = tmp_path / "app.log"
    state = tmp_path / "state" / "templates.json"
    written = 0

    def write(text: str, path: Path = log) -> None:
        nonlocal written
        append(path, text)
        written += text.count("\n")

    write(normal_traffic(0))
    watch = Watch(
        str(log), "--window", "2", "--from-start", "--state", str(state),
        "--metrics-port", str(metrics_port),
    )  # fmt: skip
    first = watch.next_window()
    assert first is not None
    assert first.learning
    assert first.records == written
    # Each batch is written right after a window is out, so it lands in the next window.
    for seed in range(1, 5):
        write(normal_traffic(seed))
        watch.next_window()
    write(normal_traffic(5) + error_burst(6))
    watch.next_window()
    # Rotation: the file is renamed, a few more lines reach it, and a new file starts.
    rotated = tmp_path / "app.log.1"
    log.rename(rotated)
    write(normal_traffic(7, requests=3), rotated)
    write(normal_traffic(8))
    watch.next_window()
    write(normal_traffic(9))
    watch.next_window()
    # Truncation (copytruncate): the file starts again shorter than what was read.
    with log.open("r+b") as stream:
        stream.truncate(0)
    write(normal_traffic(10, requests=2))
    watch.next_window()
    write(normal_traffic(11))
    watch.next_window()
    # The real Prometheus has scraped the anomaly counter by now, or does so soon.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (query(server, 'vigil_log_anomalies_total{kind="new_template"}') or 0) >= 1:
            break
        time.sleep(0.5)
    assert query(server, 'vigil_log_anomalies_total{kind="new_template"}') == 1
    assert (query(server, 'vigil_log_anomalies_total{kind="error_burst"}') or 0) >= 1
    assert (query(server, "vigil_log_templates_known") or 0) >= 3
    assert (query(server, "vigil_log_lines_total") or 0) > 0
    # Every panel of the Logs dashboard has data from this one watcher.
    logs_panels = [q for q in panel_queries() if q.dashboard == WATCHER_DASHBOARD]
    assert queries_without_data(server.url, logs_panels) == []
    assert watch.stop() == 0, watch.stderr()

    windows = watch.windows
    assert [w.index for w in windows] == list(range(len(windows)))
    # Nothing lost or read twice across the rotation and the truncation.
    assert sum(w.records for w in windows) == written
    burst = [w for w in windows if any(t.template == BURST_TEMPLATE for t in w.templates)]
    where = burst[0]
    assert {(a.kind, a.template) for a in where.anomalies} >= {("new_template", BURST_TEMPLATE)}
    assert any(a.kind == "error_burst" for w in burst for a in w.anomalies)
    for window in windows[1:]:
        if window not in burst:
            assert window.anomalies == [], window.model_dump_json(indent=1)
            assert all(not t.new for t in window.templates)
    # The template state was saved when the watcher stopped, with its history beside it.
    assert state.is_file()
    history = json.loads((state.parent / "templates.watch.json").read_text())
    assert history["windows"] == len(windows)


def test_watch_reads_standard_input_to_its_end() -> None:
    text = normal_traffic(0) + error_burst(1, count=3)
    result = subprocess.run(
        [VIGIL, "logs", "watch", "-", "--format", "jsonl", "--window", "600"],
        input=text,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    window = LogWatchWindow.model_validate_json(line)
    assert (window.source, window.source_kind) == ("-", "stdin")
    assert window.records == 43
    assert window.learning
    assert {t.template for t in window.templates} >= {BURST_TEMPLATE}


def test_watch_text_output_names_the_anomalies(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    # A first run learns the usual templates; the second sees a new error among them.
    subprocess.run(
        [VIGIL, "logs", "watch", "-", "--state", str(state)],
        input=normal_traffic(0),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = subprocess.run(
        [VIGIL, "logs", "watch", "-", "--state", str(state)],
        input=normal_traffic(1) + error_burst(2, count=2),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 anomaly" in result.stdout
    assert "new_template" in result.stdout
    assert BURST_TEMPLATE in result.stdout
    assert "refused: too many clients already" in result.stdout
