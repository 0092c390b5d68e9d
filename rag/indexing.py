"""``index_knowledge``: bring the collection in line with the runbooks and the raw store.

Every point carries the key of the file it came from and that file's content hash, so a
re-index embeds only new or changed files and removes the points of files that are gone. A
file is skipped only when its points are one committed version (``KnowledgeBase.replace_file``
commits last), so a run killed half-way through a file reindexes that file the next time.
A raw file's hash also covers the incident labels and ``LOG_CHUNKS_VERSION``: new labels, or a
new way of cutting logs into chunks, reindex the log history.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.layout import INCIDENTS_PATH, RAW_PREFIX
from contracts.store import ObjectStore
from rag.chunking import Chunk
from rag.documents import list_runbooks, parse_runbook, runbook_chunks
from rag.embeddings import Embedder, load_embedder
from rag.knowledge_base import KnowledgeBase, open_knowledge_base
from rag.log_history import (
    RAW_LOG_COLUMNS,
    IncidentWindows,
    incident_chunks,
    incident_windows,
    log_chunks,
)
from rag.settings import RagSettings

RUNBOOK_KEY_PREFIX = "runbook:"
RAW_KEY_PREFIX = "raw:"
INCIDENTS_KEY = f"incidents:{INCIDENTS_PATH}"
# Part of every raw file's hash: changing how log chunks are made reindexes the log history.
# 2: one chunk per template, instance and window, plain-text lines included (1: per line).
LOG_CHUNKS_VERSION = b"log-chunks-2"


@dataclass
class IndexReport:
    """What one indexing run did, per file key."""

    indexed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    chunks: int = 0
    collection_size: int = 0


def index_knowledge(
    kb: KnowledgeBase,
    embedder: Embedder,
    *,
    runbooks_path: Path | None = None,
    store: ObjectStore | None = None,
) -> IndexReport:
    """Index the runbooks under ``runbooks_path`` and the log history in ``store``.

    Args:
        kb: the collection to write (created when missing).
        embedder: the embedding model.
        runbooks_path: folder of Markdown/PDF runbooks; None leaves indexed runbooks alone.
        store: object store with ``raw-logs/`` and the incident labels; None leaves indexed
            log history alone.

    Returns:
        Which files were embedded, skipped as unchanged, or removed as deleted.
    """
    kb.ensure_collection()
    report = IndexReport()
    if runbooks_path is not None:
        runbooks = {
            f"{RUNBOOK_KEY_PREFIX}{p.relative_to(runbooks_path).as_posix()}": _runbook_loader(
                p.relative_to(runbooks_path).as_posix(), p
            )
            for p in list_runbooks(runbooks_path)
        }
        _sync(kb, embedder, RUNBOOK_KEY_PREFIX, runbooks, report)
    if store is not None:
        incidents_data = store.read_bytes(INCIDENTS_PATH) if store.exists(INCIDENTS_PATH) else b""
        incidents = pq.read_table(pa.BufferReader(incidents_data)) if incidents_data else None
        windows = incident_windows(incidents) if incidents is not None else {}
        # Log chunks are tagged with the incident they fall in: new labels re-tag them.
        salt = _sha256(incidents_data).encode() + LOG_CHUNKS_VERSION
        raw_files = {
            f"{RAW_KEY_PREFIX}{key}": _raw_loader(store, key, windows, salt)
            for key in store.list_keys(RAW_PREFIX, ".parquet")
        }
        _sync(kb, embedder, RAW_KEY_PREFIX, raw_files, report)
        incident_files: dict[str, Loader] = {}
        if incidents is not None:
            table = incidents
            incident_files[INCIDENTS_KEY] = lambda: (
                _sha256(incidents_data),
                lambda: incident_chunks(table, INCIDENTS_PATH),
            )
        _sync(kb, embedder, INCIDENTS_KEY, incident_files, report)
    if report.indexed or report.deleted:
        kb.optimize()
    report.collection_size = kb.count()
    return report


def index_from_settings(settings: RagSettings, store: ObjectStore | None) -> IndexReport:
    """``vigil rag index``: load the model, open the configured collection, index, close.

    Args:
        settings: where Qdrant and the runbooks are.
        store: the object store with the log history (``contracts.store.open_store``), or None
            to index the runbooks only.
    """
    embedder = load_embedder(settings.embedding_model_path, settings.embedding_batch_size)
    kb = open_knowledge_base(settings)
    try:
        return index_knowledge(kb, embedder, runbooks_path=settings.runbooks_path, store=store)
    finally:
        kb.client.close()


# A loader reads one file and returns its content hash and a function producing its chunks,
# so an unchanged file is hashed but never parsed.
Loader = Callable[[], tuple[str, Callable[[], list[Chunk]]]]


def _sync(
    kb: KnowledgeBase,
    embedder: Embedder,
    prefix: str,
    files: dict[str, Loader],
    report: IndexReport,
) -> None:
    indexed = kb.indexed_files(prefix)  # None: half-written, never equal to a content hash
    gone = sorted(set(indexed) - set(files))
    kb.delete_files(gone)
    report.deleted.extend(gone)
    for file_key, load in files.items():
        content_hash, make_chunks = load()
        if indexed.get(file_key) == content_hash:
            report.skipped.append(file_key)
            continue
        chunks = make_chunks()
        kb.replace_file(file_key, content_hash, chunks, encode_once(embedder, chunks))
        report.indexed.append(file_key)
        report.chunks += len(chunks)


def encode_once(embedder: Embedder, chunks: list[Chunk]) -> npt.NDArray[np.float32]:
    """The chunks' vectors, each distinct text embedded once: the windows of one log template
    on one instance share their text (``rag.log_history``)."""
    texts = list(dict.fromkeys(chunk.text for chunk in chunks))
    vectors = embedder.encode(texts)
    row = {text: i for i, text in enumerate(texts)}
    return vectors[[row[chunk.text] for chunk in chunks]]


def _runbook_loader(document: str, path: Path) -> Loader:
    def load() -> tuple[str, Callable[[], list[Chunk]]]:
        data = path.read_bytes()
        return _sha256(data), lambda: runbook_chunks(parse_runbook(document, data))

    return load


def _raw_loader(store: ObjectStore, key: str, windows: IncidentWindows, salt: bytes) -> Loader:
    def load() -> tuple[str, Callable[[], list[Chunk]]]:
        data = store.read_bytes(key)

        def chunks() -> list[Chunk]:
            table = pq.read_table(pa.BufferReader(data), columns=list(RAW_LOG_COLUMNS))
            return log_chunks(table, key, windows)

        return _sha256(data + salt), chunks

    return load


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
