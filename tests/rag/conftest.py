"""Real components for the explanation service: the embedding model, Qdrant local mode on a
temporary folder, a raw store with log history, and llama.cpp's server on loopback.

Every test module here is in the ``rag`` xdist group, so one worker loads the model and starts
the LLM server once for all of them.
"""

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from contracts.labels import INCIDENTS_SCHEMA
from contracts.layout import INCIDENTS_PATH, raw_partition_path
from contracts.store import ObjectStore
from contracts.telemetry import RAW_SCHEMA
from rag.embeddings import Embedder, load_embedder
from rag.explainer import Explainer
from rag.indexing import IndexReport, index_knowledge
from rag.knowledge_base import KnowledgeBase, open_knowledge_base
from rag.llm import make_llm_client
from rag.llm_server import HEALTH_PATH, llama_server_command
from rag.settings import RUNBOOKS_PATH, RagSettings
from vigil.processes import ServerProcess, free_port, start_server

ANOMALY_START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
HISTORY_START = ANOMALY_START - timedelta(minutes=30)

# (instance, source, level, message, minutes after HISTORY_START)
LOG_HISTORY = [
    ("i-db01", "rds", "ERROR", "ERROR:  canceling statement due to statement timeout", 1),
    ("i-db01", "rds", "CRITICAL", "FATAL:  remaining connection slots are reserved", 2),
    ("i-db01", "rds", "WARN", "WARNING:  there is already a transaction in progress", 3),
    ("i-web01", "app", "ERROR", "java.lang.OutOfMemoryError: Java heap space in search-svc", 4),
    ("i-web01", "app", "WARN", "GC overhead rising: full GC took 1800ms, heap 94% used", 5),
    ("i-web01", "app", "INFO", "GET /api/v1/cart completed 200 in 12ms", 6),
    (
        "i-lb01",
        "alb",
        "ERROR",
        "GET /api/v1/orders 504 900ms target=tg-api error=target_timeout",
        7,
    ),
    ("i-lb01", "alb", "WARN", "POST /login 401 20ms client=203.0.113.7", 8),
    ("i-web02", "app", "ERROR", "database query failed: deadlock detected on orders", 9),
    ("i-web02", "app", "ERROR", "database query failed: deadlock detected on orders", 10),
]


def _raw_table(rows: list[tuple[str, str, str, str, int]], start: datetime) -> pa.Table:
    n = len(rows)
    return pa.Table.from_pydict(
        {
            "timestamp": [start + timedelta(minutes=m) for *_, m in rows],
            "instance_id": [r[0] for r in rows],
            "source": [r[1] for r in rows],
            "kind": ["log"] * n,
            "name": [None] * n,
            "value": [None] * n,
            "level": [r[2] for r in rows],
            "message": [r[3] for r in rows],
            "metadata": ["{}"] * n,
            "event_id": [f"e{i}" for i in range(n)],
            "parse_error": [False] * n,
        },
        schema=RAW_SCHEMA,
    )


def write_history(store: ObjectStore) -> None:
    """One hour of raw logs and one labelled incident (the database one)."""
    hour_start = HISTORY_START
    store.write_table(raw_partition_path(hour_start), _raw_table(LOG_HISTORY, hour_start))
    incidents = pa.Table.from_pylist(
        [
            {
                "instance_id": "i-db01",
                "start": hour_start,
                "end": hour_start + timedelta(minutes=5),
                "incident_type": "service_outage",
                "metrics": ["DatabaseConnections", "Latency"],
            }
        ],
        schema=INCIDENTS_SCHEMA,
    )
    store.write_table(INCIDENTS_PATH, incidents)


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return load_embedder()


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """llama.cpp's OpenAI-compatible server with Gemma 3 270M on a free loopback port."""
    yield from _llm_server(tmp_path_factory, "llama-server")


def _llm_server(factory: pytest.TempPathFactory, name: str) -> Iterator[ServerProcess]:
    port = free_port()
    server = start_server(
        name,
        llama_server_command(port),
        f"http://127.0.0.1:{port}",
        HEALTH_PATH,
        factory.mktemp(name),
        timeout=120,
    )
    _wait_until_loaded(server)
    yield server
    server.stop()


def _wait_until_loaded(server: ServerProcess, timeout: float = 120) -> None:
    """llama-server answers /health with 503 while it loads the model: wait for the 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(server.url + HEALTH_PATH, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{server.name} did not load its model:\n{server.log()}")


@pytest.fixture
def spare_llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A second LLM server a test may kill."""
    yield from _llm_server(tmp_path_factory, "llama-server-spare")


@pytest.fixture(scope="session")
def raw_store(tmp_path_factory: pytest.TempPathFactory) -> ObjectStore:
    store = ObjectStore.from_uri(str(tmp_path_factory.mktemp("store")))
    write_history(store)
    return store


@pytest.fixture(scope="session")
def runbooks_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the shipped runbooks, so tests may edit and delete files."""
    path = tmp_path_factory.mktemp("runbooks") / "runbooks"
    shutil.copytree(RUNBOOKS_PATH, path)
    return path


def make_settings(
    tmp: Path, llm_url: str = "http://127.0.0.1:9/v1", **overrides: object
) -> RagSettings:
    values: dict[str, object] = {
        "qdrant_path": tmp / "qdrant",
        "llm_base_url": llm_url,
        "llm_timeout_s": 60.0,
        "llm_deadline_s": 120.0,  # two whole attempts: the tests share two cores
        **overrides,
    }
    return RagSettings.model_validate(values)


@pytest.fixture(scope="session")
def indexed(
    tmp_path_factory: pytest.TempPathFactory,
    embedder: Embedder,
    raw_store: ObjectStore,
    runbooks_path: Path,
) -> Iterator[tuple[KnowledgeBase, IndexReport]]:
    """A collection holding the runbooks and the log history, indexed once; read-only."""
    settings = make_settings(tmp_path_factory.mktemp("kb"))
    kb = open_knowledge_base(settings)
    report = index_knowledge(kb, embedder, runbooks_path=runbooks_path, store=raw_store)
    yield kb, report
    kb.client.close()


def make_explainer(settings: RagSettings, embedder: Embedder, kb: KnowledgeBase) -> Explainer:
    return Explainer(settings, embedder, kb, make_llm_client(settings))
