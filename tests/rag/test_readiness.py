"""Readiness without the LLM, and probes that slow explanations cannot starve.

Real Qdrant local mode and the real embedding model; the LLM is either absent (nothing listens
on its port) or a stub OpenAI-compatible server on loopback that holds every chat completion
until the test lets it go, which is what a wedged vLLM looks like from the explainer.
"""

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from contracts.explanation import ExplainResponse
from rag.embeddings import Embedder
from rag.knowledge_base import KnowledgeBase
from rag.service import create_app
from tests.rag.conftest import ANOMALY_START, make_explainer, make_settings
from tests.serving.scorer_helpers import serve_in_thread

pytestmark = pytest.mark.xdist_group("rag")

# Probes get a generous budget here: the tests share two busy cores, and what is under test is
# that the LLM does not count, not how fast Qdrant answers.
READINESS_TIMEOUT_S = 3.0


def _body() -> dict[str, Any]:
    return {
        "instance_id": "i-db01",
        "service": "rds",
        "window_start": ANOMALY_START.isoformat(),
        "window_end": (ANOMALY_START + timedelta(minutes=15)).isoformat(),
        "score": 0.97,
        "model": "xgboost_anomaly",
        "top_features": [{"name": "database_connections_mean_15", "value": 412.0}],
        "log_lines": ["FATAL:  remaining connection slots are reserved for superusers"],
    }


class StuckLLM(ThreadingHTTPServer):
    """An OpenAI-compatible server whose chat completions hang until ``release`` is set (then
    answer 503); its model list answers at once unless ``models_hang``."""

    daemon_threads = True

    def __init__(self, models_hang: bool = False) -> None:
        self.models_hang = models_hang
        self.release = threading.Event()
        self.completions = 0
        self._count_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _StuckHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def count_completion(self) -> None:
        with self._count_lock:
            self.completions += 1


class _StuckHandler(BaseHTTPRequestHandler):
    server: StuckLLM

    def do_GET(self) -> None:
        if self.server.models_hang:
            self.server.release.wait(60)
        self._answer(200, {"object": "list", "data": [{"id": "stuck", "object": "model"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.count_completion()
        self.server.release.wait(120)
        self._answer(503, {"error": {"message": "overloaded", "type": "server_error"}})

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up waiting
            pass

    def log_message(self, *args: object) -> None:
        pass


def _stuck_llm(models_hang: bool) -> Iterator[StuckLLM]:
    server = StuckLLM(models_hang)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def stuck_llm() -> Iterator[StuckLLM]:
    yield from _stuck_llm(models_hang=False)


@pytest.fixture
def silent_llm() -> Iterator[StuckLLM]:
    """Accepts connections and never answers anything, its model list included."""
    yield from _stuck_llm(models_hang=True)


def test_no_llm_listening_leaves_the_service_ready_and_explaining(
    embedder: Embedder, indexed: tuple[KnowledgeBase, object], tmp_path: Path
) -> None:
    # Port 9 (discard): nothing listens there, every connection is refused.
    settings = make_settings(tmp_path, readiness_timeout_s=READINESS_TIMEOUT_S)
    app = create_app(explainer=make_explainer(settings, embedder, indexed[0]))
    with TestClient(app) as client:
        ready = client.get("/readyz")
        response = client.post("/explain", json=_body())
    assert ready.status_code == 200, ready.text
    assert ready.json()["ready"] is True
    checks = ready.json()["checks"]
    assert checks["qdrant"].startswith("ok")
    assert checks["embedding_model"] == "ok (384-dim)"
    assert checks["llm"].startswith("failed: APIConnectionError")
    assert response.status_code == 200, response.text
    answer = ExplainResponse.model_validate(response.json())
    assert answer.degraded is True
    assert (answer.degraded_reason or "").startswith("LLM failed: ")
    assert answer.actions
    assert answer.context  # retrieval answered


def test_an_llm_that_never_answers_leaves_the_service_ready(
    silent_llm: StuckLLM,
    embedder: Embedder,
    indexed: tuple[KnowledgeBase, object],
    tmp_path: Path,
) -> None:
    settings = make_settings(
        tmp_path, silent_llm.url, readiness_timeout_s=READINESS_TIMEOUT_S, llm_deadline_s=1.0
    )
    app = create_app(explainer=make_explainer(settings, embedder, indexed[0]))
    with TestClient(app) as client:
        started = time.monotonic()
        ready = client.get("/readyz")
        waited = time.monotonic() - started
        again = client.get("/readyz")  # waits on the same stuck ping, starts no other
        response = client.post("/explain", json=_body())
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["llm"].startswith("failed")
    assert again.status_code == 200, again.text
    assert waited < 30  # bounded by the probe budget, not by the LLM
    answer = ExplainResponse.model_validate(response.json())
    assert answer.degraded is True
    assert "deadline" in (answer.degraded_reason or "") or "Timeout" in (
        answer.degraded_reason or ""
    )


def test_probes_answer_while_explanations_wait_on_a_stuck_llm(
    stuck_llm: StuckLLM,
    embedder: Embedder,
    indexed: tuple[KnowledgeBase, object],
    tmp_path: Path,
) -> None:
    """More explanations than the shared thread pool has threads (40) wait on an LLM that
    does not answer; /healthz and /readyz must still answer, before any explanation ends."""
    concurrency = 4
    settings = make_settings(
        tmp_path,
        stuck_llm.url,
        explain_concurrency=concurrency,
        readiness_timeout_s=READINESS_TIMEOUT_S,
    )
    app = create_app(explainer=make_explainer(settings, embedder, indexed[0]))
    burst = 48
    with serve_in_thread(app) as url, ThreadPoolExecutor(burst) as pool:
        explains = [
            pool.submit(httpx.post, f"{url}/explain", json=_body(), timeout=300)
            for _ in range(burst)
        ]
        deadline = time.monotonic() + 120
        while stuck_llm.completions < concurrency:
            assert time.monotonic() < deadline, f"{stuck_llm.completions} reached the LLM"
            time.sleep(0.1)
        time.sleep(1.0)  # let any explanation beyond the limit reach the LLM, if it could

        health = httpx.get(f"{url}/healthz", timeout=30)
        ready = httpx.get(f"{url}/readyz", timeout=30)

        finished = sum(future.done() for future in explains)
        held = stuck_llm.completions
        stuck_llm.release.set()
        answers = [future.result() for future in explains]
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["llm"].startswith("ok")
    assert finished == 0  # the probes answered while every explanation was still waiting
    assert held == concurrency  # only explain_concurrency threads ever waited on the LLM
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert answer.json()["degraded"] is True
