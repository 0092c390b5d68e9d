"""Qdrant Edge: the Qdrant engine in-process, one shard on a local folder (``qdrant-edge-py``).

It replaces qdrant-client's local mode, a pure-Python stand-in that scans every point's
payload for a filter (p95 over 200 ms at 10,000 points): Edge runs Qdrant's own segments,
payload indexes and query planner, so a filtered search reads only the points its indexes
select (``bench/rag.py`` measures both in one run).

Like local mode, a shard belongs to one process at a time: its write-ahead log is locked, and
a second process opening the folder gets an error until the first closes it.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    MatchAny,
    MatchValue,
    PayloadSchemaType,
    Point,
    Query,
    QueryRequest,
    RangeFloat,
    ScrollRequest,
    UpdateOperation,
)

from rag.retrieval_store import Condition, Hit, Match, StoredPoint, Where

# Written by EdgeShard.create beside its segments and WAL: its presence means a shard is there.
_SHARD_MARKER = "edge_config.json"
_SCROLL_PAGE = 1024


class EdgeStore:
    """A ``VectorStore`` on a Qdrant Edge shard in ``path`` (created by ``create``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._shard: EdgeShard | None = None
        self._closed = False
        self._load()

    def exists(self) -> bool:
        return self._load() is not None

    def create(
        self, dimension: int, keyword_fields: Sequence[str], float_fields: Sequence[str]
    ) -> None:
        if self._load() is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        config = EdgeConfig(vectors=EdgeVectorParams(size=dimension, distance=Distance.Cosine))
        shard = EdgeShard.create(str(self.path), config)
        for name in keyword_fields:
            shard.update(UpdateOperation.create_field_index(name, PayloadSchemaType.Keyword))
        for name in float_fields:
            shard.update(UpdateOperation.create_field_index(name, PayloadSchemaType.Float))
        self._shard = shard

    def count(self) -> int:
        return int(self._opened().count(CountRequest(exact=True)))

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        self._opened().update(
            UpdateOperation.upsert_points([Point(p.id, p.vector, p.payload) for p in points])
        )

    def set_payload(self, where: Where, payload: dict[str, Any]) -> None:
        self._opened().update(UpdateOperation.set_payload_by_filter(_filter(where), payload))

    def delete(self, where: Where) -> None:
        self._opened().update(UpdateOperation.delete_points_by_filter(_filter(where)))

    def scroll(self, where: Where | None, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        shard = self._opened()
        offset: Any = None
        while True:
            records, offset = shard.scroll(
                ScrollRequest(
                    offset=offset,
                    limit=_SCROLL_PAGE,
                    filter=_filter(where) if where is not None else None,
                    with_payload=list(fields),
                    with_vector=False,
                )
            )
            for record in records:
                yield dict(record.payload or {})
            if offset is None:
                return

    def query(self, vector: npt.NDArray[np.float32], where: Where | None, limit: int) -> list[Hit]:
        points = self._opened().query(
            QueryRequest(
                limit=limit,
                query=Query.Nearest(vector.tolist()),
                filter=_filter(where) if where is not None else None,
                with_payload=True,
            )
        )
        return [Hit(float(point.score), dict(point.payload or {})) for point in points]

    def optimize(self) -> None:
        """Merge segments, drop deleted points and build the HNSW graph once a segment passes
        Qdrant's indexing threshold; below it, searches stay exact over the payload index."""
        self._opened().optimize()

    def close(self) -> None:
        if self._shard is not None:
            self._shard.close()  # flushes, and releases the WAL for another process
        self._shard = None
        self._closed = True

    def _load(self) -> EdgeShard | None:
        """The shard, loaded on first use when another process has created it since."""
        if self._closed:
            raise RuntimeError(f"the Qdrant Edge shard at {self.path} is closed")
        if self._shard is None and (self.path / _SHARD_MARKER).exists():
            self._shard = EdgeShard.load(str(self.path))
        return self._shard

    def _opened(self) -> EdgeShard:
        shard = self._load()
        if shard is None:
            raise RuntimeError(f"no Qdrant Edge shard at {self.path}: nothing was indexed yet")
        return shard


def _filter(where: Where) -> Filter:
    return Filter(
        must=[_condition(c) for c in where.must] or None,
        must_not=[_condition(c) for c in where.must_not] or None,
    )


def _condition(condition: Condition) -> FieldCondition:
    # Keywords only: qdrant-edge-py 0.9.0 turns a Python bool given to MatchValue into the
    # integer 1, which matches no boolean payload, so flags are stored as keywords.
    if isinstance(condition, Match):
        values = list(condition.values)
        match = MatchValue(value=values[0]) if len(values) == 1 else MatchAny(any=values)
        return FieldCondition(key=condition.key, match=match)
    return FieldCondition(key=condition.key, range=RangeFloat(gte=condition.gte, lte=condition.lte))
