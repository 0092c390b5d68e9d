"""The Qdrant collection holding log history and runbooks: write by file, search by kind.

A file is written crash-safe (``replace_file``): its new points go in under a fresh version,
flagged ``pending``, which every search skips; one batch of updates then clears the flag and
deletes the file's other versions. An indexer killed half-way leaves the previous version
searchable and whole, and ``indexed_files`` reports the file as needing a reindex.
"""

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient, models

from rag.chunking import Chunk
from rag.embeddings import EMBEDDING_DIM
from rag.metrics import QDRANT_COLLECTION_SIZE, QDRANT_SEARCH_LATENCY
from rag.settings import RagSettings

# Payload fields that searches filter on, indexed on a Qdrant server.
_KEYWORD_FIELDS = ("kind", "file_key", "service", "document", "section", "version")
_PENDING = "pending"  # True on the points of a version not committed yet
_UPSERT_BATCH = 256
_POINT_NAMESPACE = uuid.UUID("6f1c2a51-4c0e-4f4e-9b8e-0a8f5d7c2e11")
# Points without the flag (written before versions existed) count as committed.
_UNCOMMITTED = models.FieldCondition(key=_PENDING, match=models.MatchValue(value=True))


def open_qdrant(settings: RagSettings) -> QdrantClient:
    """A Qdrant server client when ``qdrant_url`` is set, else local mode on ``qdrant_path``."""
    if settings.qdrant_url:
        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClient(
            url=settings.qdrant_url, api_key=api_key, timeout=int(settings.qdrant_timeout_s)
        )
    settings.qdrant_path.mkdir(parents=True, exist_ok=True)
    # The service searches from worker threads; KnowledgeBase serialises every call.
    return QdrantClient(path=str(settings.qdrant_path), force_disable_check_same_thread=True)


def open_knowledge_base(settings: RagSettings) -> "KnowledgeBase":
    """The configured collection (not created until something is indexed)."""
    return KnowledgeBase(
        open_qdrant(settings), settings.collection, settings.qdrant_url is not None
    )


@dataclass(frozen=True)
class Hit:
    """A search result: the stored payload and its cosine similarity to the query."""

    score: float
    payload: dict[str, Any]


@dataclass
class KnowledgeBase:
    """One collection of 384-dim cosine vectors; every point belongs to one source file.

    Calls are serialised: Qdrant's local mode is not safe across threads.
    """

    client: QdrantClient
    collection: str
    payload_indexes: bool = False  # a Qdrant server indexes payloads; local mode cannot
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    def ensure_collection(self) -> None:
        if self.client.collection_exists(self.collection):
            return
        self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=EMBEDDING_DIM, distance=models.Distance.COSINE),
        )
        if not self.payload_indexes:
            return
        for name in _KEYWORD_FIELDS:
            self.client.create_payload_index(
                self.collection, name, models.PayloadSchemaType.KEYWORD
            )
        self.client.create_payload_index(self.collection, "ts", models.PayloadSchemaType.FLOAT)
        self.client.create_payload_index(self.collection, _PENDING, models.PayloadSchemaType.BOOL)

    def exists(self) -> bool:
        with self._lock:
            return bool(self.client.collection_exists(self.collection))

    def count(self) -> int:
        """Points in the collection, a write in progress included (0 when it does not exist);
        updates the size gauge."""
        with self._lock:
            size = self.client.count(self.collection).count if self.exists() else 0
        QDRANT_COLLECTION_SIZE.set(size)
        return int(size)

    def indexed_files(self, key_prefix: str) -> dict[str, str | None]:
        """Every file with points whose key starts with the prefix: ``file_key -> content_hash``
        when its points are one committed version, else None (a write that did not finish, or
        points from before versions, which cannot be shown complete): reindex those."""
        versions: dict[str, set[tuple[str | None, str, bool]]] = {}
        offset: Any = None
        while True:
            records, offset = self.client.scroll(
                self.collection,
                limit=1024,
                offset=offset,
                with_payload=["file_key", "content_hash", "version", _PENDING],
            )
            for record in records:
                payload = record.payload or {}
                key = str(payload.get("file_key", ""))
                if key.startswith(key_prefix):
                    version = payload.get("version")
                    state = (
                        version,
                        str(payload.get("content_hash", "")),
                        bool(payload.get(_PENDING)),
                    )
                    versions.setdefault(key, set()).add(state)
            if offset is None:
                break
        files: dict[str, str | None] = {}
        for key, states in versions.items():
            (version, content_hash, pending), *others = states
            files[key] = content_hash if version and not pending and not others else None
        return files

    def replace_file(
        self,
        file_key: str,
        content_hash: str,
        chunks: Sequence[Chunk],
        vectors: npt.NDArray[np.float32],
    ) -> None:
        """Make the file's searchable points exactly ``chunks``, crash-safe (module docstring).

        Until the final batch of updates, searches see the previous version, whole; after it,
        the new one, whole. A crash before it leaves pending points that searches skip and the
        next ``replace_file`` of the file deletes.
        """
        version = uuid.uuid4().hex
        points = [
            models.PointStruct(
                id=str(uuid.uuid5(_POINT_NAMESPACE, f"{file_key}#{version}#{i}")),
                vector=vector.tolist(),
                payload={
                    **chunk.payload,
                    "text": chunk.text,
                    "file_key": file_key,
                    "content_hash": content_hash,
                    "chunk": i,
                    "version": version,
                    _PENDING: True,
                },
            )
            for i, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True))
        ]
        for start in range(0, len(points), _UPSERT_BATCH):
            self.client.upsert(self.collection, points[start : start + _UPSERT_BATCH])
        of_file = models.FieldCondition(key="file_key", match=models.MatchValue(value=file_key))
        this_version = models.FieldCondition(key="version", match=models.MatchValue(value=version))
        # Commit, then drop the rest (older versions, leftovers of a crashed write) in one
        # request: a crash between the two would only leave two whole versions, which
        # indexed_files reports for a reindex.
        self.client.batch_update_points(
            self.collection,
            [
                models.SetPayloadOperation(
                    set_payload=models.SetPayload(
                        payload={_PENDING: False},
                        filter=models.Filter(must=[of_file, this_version]),
                    )
                ),
                models.DeleteOperation(
                    delete=models.FilterSelector(
                        filter=models.Filter(must=[of_file], must_not=[this_version])
                    )
                ),
            ],
        )

    def delete_files(self, file_keys: Sequence[str]) -> None:
        if not file_keys:
            return
        self.client.delete(
            self.collection,
            points_selector=models.FilterSelector(
                filter=models.Filter(
                    must=[
                        models.FieldCondition(
                            key="file_key", match=models.MatchAny(any=list(file_keys))
                        )
                    ]
                )
            ),
        )

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
        must: list[models.Condition] = [
            models.FieldCondition(key="kind", match=models.MatchAny(any=list(kinds)))
        ]
        if service is not None:
            must.append(
                models.FieldCondition(key="service", match=models.MatchValue(value=service))
            )
        if since is not None or until is not None:
            must.append(
                models.FieldCondition(
                    key="ts",
                    range=models.Range(
                        gte=since.timestamp() if since else None,
                        lte=until.timestamp() if until else None,
                    ),
                )
            )
        with self._lock:
            started = time.perf_counter()
            response = self.client.query_points(
                self.collection,
                query=vector.tolist(),
                query_filter=models.Filter(must=must, must_not=[_UNCOMMITTED]),
                limit=limit,
                with_payload=True,
            )
        QDRANT_SEARCH_LATENCY.observe((time.perf_counter() - started) * 1000)
        return [Hit(float(p.score), dict(p.payload or {})) for p in response.points]

    def section_texts(self, document: str, section_word: str) -> list[str]:
        """Texts of a runbook's chunks whose section heading contains ``section_word``."""
        with self._lock:
            records, _ = self.client.scroll(
                self.collection,
                scroll_filter=models.Filter(
                    must=[
                        models.FieldCondition(key="kind", match=models.MatchValue(value="runbook")),
                        models.FieldCondition(
                            key="document", match=models.MatchValue(value=document)
                        ),
                    ],
                    must_not=[_UNCOMMITTED],
                ),
                limit=256,
                with_payload=["section", "text", "chunk"],
            )
        payloads = sorted((r.payload or {} for r in records), key=lambda p: int(p.get("chunk", 0)))
        return [
            str(p.get("text", ""))
            for p in payloads
            if section_word.lower() in str(p.get("section", "")).lower()
        ]
