"""The collection holding log history and runbooks: write by file, search by kind.

One interface over two real Qdrant engines (``rag.retrieval_store``): Qdrant Edge in-process
on ``qdrant_path`` by default, a Qdrant server when ``qdrant_url`` is set (production).

A file is written crash-safe (``replace_file``): its new points go in under a fresh version,
in state ``pending``, which every search skips; they are then committed and the file's other
versions deleted. An indexer killed half-way leaves the previous version searchable and
whole, and ``indexed_files`` reports the file as needing a reindex.
"""

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient

from rag.chunking import Chunk
from rag.embeddings import EMBEDDING_DIM
from rag.metrics import QDRANT_COLLECTION_SIZE, QDRANT_SEARCH_LATENCY
from rag.retrieval_edge import EdgeStore
from rag.retrieval_server import ServerStore
from rag.retrieval_store import Condition, Hit, Match, Range, StoredPoint, VectorStore, Where
from rag.settings import RagSettings

__all__ = ["Hit", "KnowledgeBase", "open_knowledge_base"]

# Payload fields that searches filter on: indexed by Qdrant Edge and by a Qdrant server.
_KEYWORD_FIELDS = ("kind", "file_key", "service", "document", "section", "version", "state")
_FLOAT_FIELDS = ("ts",)
# A point's write state: "pending" until its file's version is committed. A keyword, not a
# boolean flag: see rag.retrieval_edge on booleans in filters.
_STATE = "state"
_PENDING = "pending"
_COMMITTED = "committed"
_UPSERT_BATCH = 256
_POINT_NAMESPACE = uuid.UUID("6f1c2a51-4c0e-4f4e-9b8e-0a8f5d7c2e11")
# Points without a state (written before versions existed) count as committed for searches.
_UNCOMMITTED = Match(_STATE, (_PENDING,))


def open_knowledge_base(settings: RagSettings) -> "KnowledgeBase":
    """The configured collection (not created until something is indexed): on the Qdrant
    server at ``qdrant_url`` when set, else a Qdrant Edge shard under ``qdrant_path``."""
    if settings.qdrant_url:
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        client = QdrantClient(
            url=settings.qdrant_url, api_key=api_key, timeout=int(settings.qdrant_timeout_s)
        )
        store: VectorStore = ServerStore(client, settings.collection, payload_indexes=True)
    else:
        store = EdgeStore(settings.qdrant_path / "edge" / settings.collection)
    return KnowledgeBase(store, settings.collection)


@dataclass
class KnowledgeBase:
    """One collection of 384-dim cosine vectors; every point belongs to one source file.

    Calls are serialised: a collection is shared by the service's worker threads.
    """

    client: VectorStore
    collection: str
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    def ensure_collection(self) -> None:
        with self._lock:
            self.client.create(EMBEDDING_DIM, _KEYWORD_FIELDS, _FLOAT_FIELDS)

    def exists(self) -> bool:
        with self._lock:
            return self.client.exists()

    def count(self) -> int:
        """Points in the collection, a write in progress included (0 when it does not exist);
        updates the size gauge."""
        with self._lock:
            size = self.client.count() if self.client.exists() else 0
        QDRANT_COLLECTION_SIZE.set(size)
        return size

    def indexed_files(self, key_prefix: str) -> dict[str, str | None]:
        """Every file with points whose key starts with the prefix: ``file_key -> content_hash``
        when its points are one committed version, else None (a write that did not finish, or
        points from before versions, which cannot be shown complete): reindex those."""
        versions: dict[str, set[tuple[str | None, str, str | None]]] = {}
        with self._lock:
            payloads = list(
                self.client.scroll(None, ["file_key", "content_hash", "version", _STATE])
            )
        for payload in payloads:
            key = str(payload.get("file_key", ""))
            if key.startswith(key_prefix):
                entry = (
                    payload.get("version"),
                    str(payload.get("content_hash", "")),
                    payload.get(_STATE),
                )
                versions.setdefault(key, set()).add(entry)
        files: dict[str, str | None] = {}
        for key, states in versions.items():
            (version, content_hash, state), *others = states
            files[key] = content_hash if version and state == _COMMITTED and not others else None
        return files

    def replace_file(
        self,
        file_key: str,
        content_hash: str,
        chunks: Sequence[Chunk],
        vectors: npt.NDArray[np.float32],
    ) -> None:
        """Make the file's searchable points exactly ``chunks``, crash-safe (module docstring).

        Until the commit, searches see the previous version, whole; after it, the new one (and,
        for as long as the old version's deletion takes, both). A crash before the commit leaves
        pending points that searches skip and the next ``replace_file`` of the file deletes; a
        crash between commit and deletion leaves two whole versions, which ``indexed_files``
        reports for a reindex.
        """
        version = uuid.uuid4().hex
        points = [
            StoredPoint(
                id=str(uuid.uuid5(_POINT_NAMESPACE, f"{file_key}#{version}#{i}")),
                vector=vector.tolist(),
                payload={
                    **chunk.payload,
                    "text": chunk.text,
                    "file_key": file_key,
                    "content_hash": content_hash,
                    "chunk": i,
                    "version": version,
                    _STATE: _PENDING,
                },
            )
            for i, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
        ]
        of_file = Match("file_key", (file_key,))
        this_version = Match("version", (version,))
        with self._lock:
            for start in range(0, len(points), _UPSERT_BATCH):
                self.client.upsert(points[start : start + _UPSERT_BATCH])
            self.client.set_payload(Where(must=(of_file, this_version)), {_STATE: _COMMITTED})
            self.client.delete(Where(must=(of_file,), must_not=(this_version,)))

    def delete_files(self, file_keys: Sequence[str]) -> None:
        if not file_keys:
            return
        with self._lock:
            self.client.delete(Where(must=(Match("file_key", tuple(file_keys)),)))

    def optimize(self) -> None:
        """Let the engine rebuild its indexes after a batch of writes (``VectorStore``)."""
        with self._lock:
            self.client.optimize()

    def search(
        self,
        vector: npt.NDArray[np.float32],
        kinds: Sequence[str],
        limit: int,
        *,
        service: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Hit]:
        """The ``limit`` nearest points of the given kinds, optionally of one service and time."""
        must: list[Condition] = [Match("kind", tuple(kinds))]
        if service is not None:
            must.append(Match("service", (service,)))
        if since is not None or until is not None:
            must.append(
                Range(
                    "ts",
                    gte=since.timestamp() if since else None,
                    lte=until.timestamp() if until else None,
                )
            )
        where = Where(must=tuple(must), must_not=(_UNCOMMITTED,))
        with self._lock:
            started = time.perf_counter()
            hits = self.client.query(vector, where, limit)
        QDRANT_SEARCH_LATENCY.observe((time.perf_counter() - started) * 1000)
        return hits

    def section_texts(self, document: str, section_word: str) -> list[str]:
        """Texts of a runbook's chunks whose section heading contains ``section_word``."""
        where = Where(
            must=(Match("kind", ("runbook",)), Match("document", (document,))),
            must_not=(_UNCOMMITTED,),
        )
        with self._lock:
            payloads = list(self.client.scroll(where, ["section", "text", "chunk"]))
        payloads.sort(key=lambda p: int(p.get("chunk", 0)))
        return [
            str(p.get("text", ""))
            for p in payloads
            if section_word.lower() in str(p.get("section", "")).lower()
        ]
