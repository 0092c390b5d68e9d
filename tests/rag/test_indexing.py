"""Indexing into real Qdrant (Edge, in-process) with the real embedding model: payloads, content
hashes that skip unchanged files, removal of deleted files, and recovery from an indexer
killed in the middle of a file."""

import shutil
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from contracts.layout import INCIDENTS_PATH, raw_partition_path
from contracts.store import ObjectStore
from contracts.telemetry import RAW_SCHEMA
from rag.chunking import LOG_CHUNK_CHARS
from rag.documents import parse_runbook, runbook_chunks
from rag.embeddings import Embedder
from rag.indexing import INCIDENTS_KEY, index_knowledge
from rag.knowledge_base import KnowledgeBase, open_knowledge_base
from rag.retrieval_edge import EdgeStore
from rag.retrieval_store import Match, StoredPoint, Where
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
    assert top["timestamp"].startswith("2026-03-02T09:32")  # its first record
    assert (top["window_start"], top["window_end"]) == (
        "2026-03-02T09:30:00+00:00",
        "2026-03-02T09:35:00+00:00",
    )
    assert "remaining connection slots are reserved" in top["template"]
    assert top["count"] == 1
    assert top["examples"] == ["FATAL:  remaining connection slots are reserved"]
    texts = [h.payload["text"] for h in hits]
    assert all(len(t) <= LOG_CHUNK_CHARS for t in texts)
    assert not any("completed 200" in t for t in texts)  # INFO lines are not indexed
    # One point per template and instance-window: the two deadlock lines fall in two windows,
    # and share one text (embedded once).
    deadlocks = sorted(
        (h.payload for h in hits if "deadlock detected" in h.payload["text"]),
        key=lambda p: str(p["window_start"]),
    )
    assert [(p["window_start"][11:16], p["count"]) for p in deadlocks] == [
        ("09:35", 1),
        ("09:40", 1),
    ]
    assert len({p["text"] for p in deadlocks}) == 1


def test_plain_text_lines_are_indexed(tmp_path: Path, embedder: Embedder) -> None:
    """Lines the exporter kept whole (no JSON, no level) are parsed, mined and searchable."""
    lines = [
        "Mar  2 09:31:02 web01 kernel: Out of memory: Killed process 4242 (java)",
        "Mar  2 09:31:40 web01 kernel: Out of memory: Killed process 4307 (java)",
        "Mar  2 09:32:00 web01 systemd[1]: Started Daily apt download activity.",
    ]
    n = len(lines)
    table = pa.Table.from_pydict(
        {
            "timestamp": [HISTORY_START + timedelta(minutes=1, seconds=i) for i in range(n)],
            "instance_id": ["i-web01"] * n,
            "source": ["ec2"] * n,
            "kind": ["log"] * n,
            "name": [None] * n,
            "value": [None] * n,
            "level": [None] * n,
            "message": lines,
            "metadata": [None] * n,
            "event_id": [str(i) for i in range(n)],
            "parse_error": [True] * n,
        },
        schema=RAW_SCHEMA,
    )
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    store.write_table(raw_partition_path(HISTORY_START), table)
    kb = open_knowledge_base(make_settings(tmp_path))
    try:
        report = index_knowledge(kb, embedder, store=store)
        assert report.chunks == kb.count() == 2  # one template per line kind
        hits = kb.search(embedder.encode(["java killed: out of memory"])[0], ["log"], 1)
        top = hits[0].payload
        assert top["text"] == (
            "LOG [ec2] i-web01: Out of memory: Killed process 4242 (java)"  # header stripped
        )
        assert top["level"] is None
        assert top["count"] == 2
        assert top["examples"] == lines[:2]
    finally:
        kb.client.close()


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


class InjectedCrashError(RuntimeError):
    """Stands for the indexer being killed."""


class CrashingEdge(EdgeStore):
    """A real Qdrant Edge shard whose upserts store their first ``keep`` points and then raise:
    the collection as an indexer killed in the middle of writing a file leaves it."""

    def __init__(self, path: Path, keep: int = 2) -> None:
        super().__init__(path)
        self.keep = keep

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        super().upsert(list(points)[: self.keep])
        raise InjectedCrashError(f"killed after {self.keep} points")


def _kb(path: Path, store: type[EdgeStore] = EdgeStore) -> KnowledgeBase:
    return KnowledgeBase(store(path), "crash")


def _runbooks(tmp_path: Path, *names: str) -> Path:
    path = tmp_path / "runbooks"
    path.mkdir()
    for name in names:
        shutil.copy(RUNBOOKS_PATH / name, path / name)
    return path


def _points(kb: KnowledgeBase, file_key: str) -> list[dict[str, Any]]:
    """Every point of the file, searchable or not."""
    where = Where(must=(Match("file_key", (file_key,)),))
    return list(kb.client.scroll(where, ["chunk", "version", "state", "text"]))


def _visible(kb: KnowledgeBase, embedder: Embedder, document: str) -> list[str]:
    """What searches return of the runbook (every kind asked, far more than it holds)."""
    hits = kb.search(embedder.encode([f"{document} runbook"])[0], ["runbook", "log"], 1000)
    return sorted(h.payload["text"] for h in hits if h.payload["document"] == document)


def _expected_texts(runbooks: Path, name: str) -> list[str]:
    chunks = runbook_chunks(parse_runbook(name, (runbooks / name).read_bytes()))
    return [chunk.text for chunk in chunks]


ESCALATION = "\n## Escalation\n- Page the JVM team.\n"


def test_a_crash_mid_file_keeps_the_old_version_and_the_rerun_completes_it(
    tmp_path: Path, embedder: Embedder
) -> None:
    runbooks = _runbooks(tmp_path, "database.md", "memory.md", "network.md")
    qdrant_path = tmp_path / "qdrant"
    kb = _kb(qdrant_path)
    index_knowledge(kb, embedder, runbooks_path=runbooks)
    before = _visible(kb, embedder, "memory.md")
    assert before == sorted(_expected_texts(runbooks, "memory.md"))
    kb.client.close()

    memory = runbooks / "memory.md"
    memory.write_text(memory.read_text() + ESCALATION)
    crashing = _kb(qdrant_path, CrashingEdge)
    with pytest.raises(InjectedCrashError):
        index_knowledge(crashing, embedder, runbooks_path=runbooks)
    crashing.client.close()

    kb = _kb(qdrant_path)
    try:
        assert _visible(kb, embedder, "memory.md") == before  # searches see the old version...
        written = [p for p in _points(kb, "runbook:memory.md") if p["state"] == "pending"]
        assert len(written) == 2  # ...never the half-written new one, though it is there
        assert kb.section_texts("memory.md", "Escalation") == []
        assert kb.indexed_files("runbook:")["runbook:memory.md"] is None

        rerun = index_knowledge(kb, embedder, runbooks_path=runbooks)
        assert rerun.indexed == ["runbook:memory.md"]
        assert sorted(rerun.skipped) == ["runbook:database.md", "runbook:network.md"]
        expected = _expected_texts(runbooks, "memory.md")
        points = _points(kb, "runbook:memory.md")
        assert sorted(p["chunk"] for p in points) == list(range(len(expected)))  # exactly once
        assert len({p["version"] for p in points}) == 1
        assert {p["state"] for p in points} == {"committed"}
        assert _visible(kb, embedder, "memory.md") == sorted(expected)
        assert "Page the JVM team." in kb.section_texts("memory.md", "Escalation")[0]
        total = sum(len(_expected_texts(runbooks, p.name)) for p in runbooks.iterdir())
        assert kb.count() == total  # no duplicate and no leftover anywhere

        again = index_knowledge(kb, embedder, runbooks_path=runbooks)
        assert again.indexed == []
    finally:
        kb.client.close()


def test_a_crash_on_a_first_index_leaves_nothing_half_searchable(
    tmp_path: Path, embedder: Embedder
) -> None:
    runbooks = _runbooks(tmp_path, "memory.md")
    qdrant_path = tmp_path / "qdrant"
    crashing = _kb(qdrant_path, CrashingEdge)
    with pytest.raises(InjectedCrashError):
        index_knowledge(crashing, embedder, runbooks_path=runbooks)
    crashing.client.close()

    kb = _kb(qdrant_path)
    try:
        assert len(_points(kb, "runbook:memory.md")) == 2
        assert _visible(kb, embedder, "memory.md") == []
        rerun = index_knowledge(kb, embedder, runbooks_path=runbooks)
        assert rerun.indexed == ["runbook:memory.md"]
        expected = _expected_texts(runbooks, "memory.md")
        assert _visible(kb, embedder, "memory.md") == sorted(expected)
        assert kb.count() == len(expected)
    finally:
        kb.client.close()


def test_a_file_the_old_indexer_left_half_written_is_reindexed(
    tmp_path: Path, embedder: Embedder
) -> None:
    """The delete-then-upsert indexer this replaces, killed mid-file, left part of the file's
    chunks with the full file's hash and was then skipped forever; such points carry no
    version, so the file is reindexed."""
    runbooks = _runbooks(tmp_path, "memory.md")
    kb = _kb(tmp_path / "qdrant")
    try:
        index_knowledge(kb, embedder, runbooks_path=runbooks)
        payloads = list(kb.client.scroll(None, ["text", "file_key", "chunk", "kind", "document"]))
        kb.delete_files(["runbook:memory.md"])
        legacy = [
            StoredPoint(str(uuid.uuid4()), embedder.encode([p["text"]])[0].tolist(), p)
            for p in payloads[:2]
        ]
        kb.client.upsert(legacy)

        rerun = index_knowledge(kb, embedder, runbooks_path=runbooks)
        assert rerun.indexed == ["runbook:memory.md"]
        expected = _expected_texts(runbooks, "memory.md")
        assert _visible(kb, embedder, "memory.md") == sorted(expected)
        assert kb.count() == len(expected)
    finally:
        kb.client.close()
