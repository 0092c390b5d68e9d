"""One KnowledgeBase over two real Qdrant engines: Qdrant Edge in-process (the default) and
qdrant-client (a server in production; its local mode here). Both answer the same filtered
searches as an exact NumPy search over the same vectors, and keep the write protocol."""

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from qdrant_client import QdrantClient

from rag.chunking import Chunk
from rag.embeddings import EMBEDDING_DIM
from rag.knowledge_base import KnowledgeBase, open_knowledge_base
from rag.retrieval_edge import EdgeStore
from rag.retrieval_server import ServerStore
from tests.rag.conftest import make_settings

pytestmark = [
    pytest.mark.xdist_group("rag"),
    # Local mode accepts the server's payload indexes and says they do nothing: expected.
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
]

START = datetime(2026, 3, 2, tzinfo=UTC)
SERVICES = ("ec2", "rds", "app")
Engine = Callable[[Path], KnowledgeBase]
ENGINES: dict[str, Engine] = {
    "edge": lambda path: KnowledgeBase(EdgeStore(path / "edge"), "kb"),
    # Payload indexes asked for as on a server (local mode accepts and ignores them).
    "local-mode": lambda path: KnowledgeBase(
        ServerStore(QdrantClient(path=str(path)), "kb", payload_indexes=True), "kb"
    ),
}


def _unit(rows: int, seed: int) -> NDArray[np.float32]:
    vectors = np.random.default_rng(seed).standard_normal((rows, EMBEDDING_DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _chunks(n: int, kind: str) -> list[Chunk]:
    return [
        Chunk(
            text=f"{kind} {i}",
            payload={
                "kind": kind,
                "service": SERVICES[i % 3],
                "ts": (START + timedelta(minutes=i)).timestamp(),
                "section": f"Doc > {'Remediation' if i % 2 else 'Diagnosis'} {i}",
                "document": f"{kind}.md",
            },
        )
        for i in range(n)
    ]


@pytest.fixture(params=sorted(ENGINES))
def kb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KnowledgeBase]:
    kb = ENGINES[request.param](tmp_path)
    yield kb
    kb.client.close()


def test_filtered_searches_equal_an_exact_search(kb: KnowledgeBase) -> None:
    assert not kb.exists()
    assert kb.count() == 0
    kb.ensure_collection()
    logs, runbooks = _chunks(300, "log"), _chunks(40, "runbook")
    log_vectors, runbook_vectors = _unit(300, 1), _unit(40, 2)
    kb.replace_file("raw:a", "h1", logs, log_vectors)
    kb.replace_file("runbook:b", "h2", runbooks, runbook_vectors)
    assert kb.count() == 340
    for seed in range(10):
        query = _unit(1, 100 + seed)[0]
        since, until = START + timedelta(minutes=50), START + timedelta(minutes=250)
        hits = kb.search(query, ["log"], 5, service="rds", since=since, until=until)
        mask = np.array(
            [
                c.payload["service"] == "rds"
                and since.timestamp() <= c.payload["ts"] <= until.timestamp()
                for c in logs
            ]
        )
        scores = np.where(mask, log_vectors @ query, -np.inf)
        expected = [logs[i].text for i in np.argsort(-scores)[:5]]
        assert [hit.payload["text"] for hit in hits] == expected
        assert [hit.score for hit in hits] == pytest.approx(sorted(scores)[::-1][:5], abs=1e-5)
        assert {hit.payload["kind"] for hit in kb.search(query, ["runbook"], 50)} == {"runbook"}


def test_versions_sections_and_deletes(kb: KnowledgeBase) -> None:
    kb.ensure_collection()
    kb.replace_file("runbook:b", "h1", _chunks(6, "runbook"), _unit(6, 3))
    assert kb.indexed_files("runbook:") == {"runbook:b": "h1"}
    assert kb.section_texts("runbook.md", "remediation") == ["runbook 1", "runbook 3", "runbook 5"]
    kb.replace_file("runbook:b", "h2", _chunks(4, "runbook"), _unit(4, 4))
    assert kb.indexed_files("runbook:") == {"runbook:b": "h2"}
    assert kb.count() == 4  # the old version is gone
    kb.delete_files(["runbook:b"])
    assert kb.count() == 0
    assert kb.indexed_files("") == {}


def test_a_closed_engine_raises(kb: KnowledgeBase) -> None:
    kb.ensure_collection()
    kb.client.close()
    with pytest.raises(Exception):  # noqa: B017, PT011  # each engine raises its own kind
        kb.count()


def test_an_edge_shard_persists_and_belongs_to_one_opener(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    waiting = open_knowledge_base(settings)  # before anything is indexed: holds nothing
    assert not waiting.exists()
    writer = open_knowledge_base(settings)
    writer.ensure_collection()
    writer.replace_file("raw:a", "h", _chunks(20, "log"), _unit(20, 5))
    with pytest.raises(Exception, match="WAL"):  # the engine raises a bare Exception
        waiting.count()  # the shard exists now, but the writer holds it
    writer.optimize()
    writer.client.close()
    assert waiting.count() == 20  # loaded once the writer let go
    waiting.client.close()
    reopened = open_knowledge_base(settings)
    try:
        assert reopened.indexed_files("raw:") == {"raw:a": "h"}
    finally:
        reopened.client.close()
