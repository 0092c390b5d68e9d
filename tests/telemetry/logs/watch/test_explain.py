"""Anomalous windows explained over HTTP: the request follows ``contracts.explanation`` and
carries the API key; an explainer that is down or refuses leaves the watcher running."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import pytest
import uvicorn
from fastapi import Depends, FastAPI
from pydantic import SecretStr

from contracts.auth import api_key_guard
from contracts.explanation import ExplainRequest, ExplainResponse
from contracts.log_watch import WATCH_MODEL_NAME, LogWatchWindow
from telemetry.logs.watch.explain import WindowExplainer
from telemetry.logs.watch.metrics import WatchMetrics
from telemetry.logs.watch.settings import LogWatchSettings
from telemetry.logs.watch.sources import FileTail
from telemetry.logs.watch.watcher import Watcher
from tests.telemetry.logs.watch.conftest import BURST_TEMPLATE, append, error_burst, normal_traffic
from vigil.processes import free_port

KEY = "watch-test-key-0123456789"


def explainer_app(received: list[ExplainRequest]) -> FastAPI:
    """An explainer speaking the contract: the API-key guard, the request and answer models."""
    app = FastAPI()
    guard = api_key_guard(lambda request: SecretStr(KEY))

    @app.post("/explain")
    def explain(request: ExplainRequest, _: Annotated[None, Depends(guard)]) -> ExplainResponse:
        received.append(request)
        return ExplainResponse(
            root_cause="The database ran out of connection slots.",
            impact="Requests that need the database fail.",
            actions=["Raise max_connections", "Check for connection leaks"],
            prevention=[],
            analysis_type="database",
            context=[],
            degraded=False,
        )

    return app


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the explainer did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def burst_windows(tmp_path: Path, explainer: WindowExplainer) -> list[LogWatchWindow]:
    """Run a watcher over three windows (learning, usual, a new error burst)."""
    log = tmp_path / "app.log"
    log.write_text("")
    batches = iter([normal_traffic(0), normal_traffic(1), normal_traffic(2) + error_burst(3)])
    # A clock that moves 1/100 of a window at every read: a batch written when a window is
    # emitted is read in the next one, however loaded the machine.
    ticks = iter(range(10_000_000))
    source = FileTail(log, sleep=lambda seconds: None)
    watcher = Watcher(
        source,
        LogWatchSettings(window_s=1.0),
        explainer=explainer,
        metrics=explainer.metrics,
        clock=lambda: next(ticks) / 100,
    )
    emitted: list[LogWatchWindow] = []

    def emit(window: LogWatchWindow) -> None:
        emitted.append(window)
        batch = next(batches, None)
        if batch is not None:
            append(log, batch)

    append(log, next(batches))
    watcher.run(emit, max_windows=3)
    explainer.close()
    return emitted


def test_an_anomalous_window_is_explained(tmp_path: Path) -> None:
    received: list[ExplainRequest] = []
    metrics = WatchMetrics()
    with serve(explainer_app(received)) as url:
        windows = burst_windows(
            tmp_path, WindowExplainer(url, SecretStr(KEY), 30.0, "high", metrics)
        )
    quiet, burst = windows[1], windows[2]
    assert quiet.explanation is None  # nothing to explain
    assert burst.explanation is not None
    assert burst.explanation.status == "explained"
    assert burst.explanation.root_cause == "The database ran out of connection slots."
    assert burst.explanation.actions[0] == "Raise max_connections"
    (request,) = received
    assert request.model == WATCH_MODEL_NAME
    assert request.instance_id == str(tmp_path / "app.log")
    assert request.score == 0.9  # its most severe anomaly is high
    assert any(BURST_TEMPLATE in line for line in request.log_lines)
    assert any("refused: too many clients already" in line for line in request.log_lines)
    assert metrics.explanations.labels(outcome="explained")._value.get() == 1


@pytest.mark.parametrize("reachable", [True, False])
def test_an_explainer_that_refuses_or_is_down_degrades_the_window_only(
    tmp_path: Path, reachable: bool
) -> None:
    received: list[ExplainRequest] = []
    with serve(explainer_app(received)) as url:
        target = url if reachable else f"http://127.0.0.1:{free_port()}"
        windows = burst_windows(
            tmp_path, WindowExplainer(target, SecretStr("wrong key"), 5.0, "high")
        )
    explanation = windows[2].explanation
    assert explanation is not None
    assert explanation.status == "unavailable"
    assert explanation.root_cause is None
    assert explanation.reason is not None
    assert ("401" in explanation.reason) is reachable
    assert received == []
    assert windows[2].anomalies  # the window itself is whole
