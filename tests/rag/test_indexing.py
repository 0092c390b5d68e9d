"""Indexing into real Qdrant local mode with the real embedding model: payloads, content
hashes that skip unchanged files, and removal of deleted files."""

import shutil
from pathlib import Path

import pytest

from contracts.layout import INCIDENTS_PATH, raw_partition_path
from contracts.store import ObjectStore
from rag.chunking import LOG_CHUNK_CHARS
from rag.embeddings import Embedder
from rag.indexing import INCIDENTS_KEY, index_knowledge
from rag.knowledge_base import KnowledgeBase, open_knowledge_base
from rag.settings import RUNBOOKS_PATH
from tests.rag.conftest import HISTORY_START, make_settings, write_history

pytestmark = pytest.mark.xdist_group("rag")


def _documents(kb: KnowledgeBase, embedder: Embedder, query: str) -> list[str]:
    hits = kb.search(embedder.encode([query])[0], ["runbook"], 50)
    return [h.payload["document"] for h in hits]


def test_reindex_skips_unchanged_and_removes_deleted(tmp_path: Path, embedder: Embedder) -> None:
    runbooks = tmp_path / "runbooks"
    shutil.copytree(RUNBOOKS_PATH, runbooks)
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    write_history(store)
    kb = open_knowledge_base(make_settings(tmp_path))
    try:
        first = index_knowledge(kb, embedder, runbooks_path=runbooks, store=store)
        assert len(first.indexed) == len(list(runbooks.glob("*.md"))) + 2  # + raw + incidents
        assert first.skipped == []
        assert first.deleted == []
        assert first.collection_size == kb.count() > first.chunks - 1 > 0

        again = index_knowledge(kb, embedder, runbooks_path=runbooks, store=store)
        assert again.indexed == []
        assert again.chunks == 0
        assert sorted(again.skipped) == sorted(first.indexed)
        assert kb.count() == first.collection_size

        memory = runbooks / "memory.md"
        memory.write_text(memory.read_text() + "\n## Escalation\n- Page the JVM team.\n")
        (runbooks / "network.md").unlink()
        store.delete(raw_partition_path(HISTORY_START))
        third = index_knowledge(kb, embedder, runbooks_path=runbooks, store=store)
        assert third.indexed == ["runbook:memory.md"]
        assert sorted(third.deleted) == [
            "raw:" + raw_partition_path(HISTORY_START),
            "runbook:network.md",
        ]
        assert "network.md" not in _documents(kb, embedder, "connection refused upstream")
        assert kb.search(embedder.encode(["deadlock"])[0], ["log"], 5) == []
        escalation = kb.section_texts("memory.md", "Escalation")
        assert escalation
        assert "Page the JVM team." in escalation[0]
        assert INCIDENTS_KEY in third.skipped
    finally:
        kb.client.close()


def test_log_payloads(indexed: tuple[KnowledgeBase, object], embedder: Embedder) -> None:
    kb, _ = indexed
    hits = kb.search(embedder.encode(["remaining connection slots"])[0], ["log"], 20)
    assert hits, "log history was not indexed"
    top = hits[0].payload
    assert top["instance_id"] == "i-db01"
    assert top["service"] == "rds"
    assert top["level"] == "CRITICAL"
    assert top["document"] == raw_partition_path(HISTORY_START)
    assert top["incident_type"] == "service_outage"  # inside the labelled incident window
    assert top["timestamp"].startswith("2026-03-02T09:32")
    texts = [h.payload["text"] for h in hits]
    assert all(len(t) <= LOG_CHUNK_CHARS for t in texts)
    assert not any("completed 200" in t for t in texts)  # INFO lines are not indexed
    assert sum("deadlock detected" in t for t in texts) == 1  # repeats are indexed once


def test_incidents_are_indexed(indexed: tuple[KnowledgeBase, object], embedder: Embedder) -> None:
    kb, _ = indexed
    hits = kb.search(embedder.encode(["past outage on i-db01"])[0], ["incident"], 5)
    assert len(hits) == 1
    assert hits[0].payload["incident_type"] == "service_outage"
    assert hits[0].payload["document"] == INCIDENTS_PATH
    assert "DatabaseConnections" in hits[0].payload["text"]


def test_missing_runbook_folder_is_a_clear_error(tmp_path: Path, embedder: Embedder) -> None:
    kb = open_knowledge_base(make_settings(tmp_path))
    try:
        with pytest.raises(FileNotFoundError, match="runbook folder"):
            index_knowledge(kb, embedder, runbooks_path=tmp_path / "nope")
    finally:
        kb.client.close()
