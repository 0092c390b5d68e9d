"""A Qdrant server through qdrant-client: the production knowledge base (``qdrant_url``).

The same class over qdrant-client's local mode (``QdrantClient(path=...)``) is what the
knowledge base ran on before Qdrant Edge; ``bench/rag.py`` keeps it as the "before" of its
comparison. Local mode cannot index payloads, so ``payload_indexes`` is for a server only.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from qdrant_client import QdrantClient, models

from rag.retrieval_store import Condition, Hit, Match, StoredPoint, Where

_SCROLL_PAGE = 1024


@dataclass
class ServerStore:
    """A ``VectorStore`` on one collection of a Qdrant server (or of local mode)."""

    client: QdrantClient
    collection: str
    payload_indexes: bool = False

    def exists(self) -> bool:
        return bool(self.client.collection_exists(self.collection))

    def create(
        self, dimension: int, keyword_fields: Sequence[str], float_fields: Sequence[str]
    ) -> None:
        if not self.exists():
            self.client.create_collection(
                self.collection,
                vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            )
        if not self.payload_indexes:
            return
        # Also on a collection created by an older Vigil: a field searches filter on now
        # (``state``) gets its index.
        indexed = set(self.client.get_collection(self.collection).payload_schema)
        wanted = [(name, models.PayloadSchemaType.KEYWORD) for name in keyword_fields]
        wanted += [(name, models.PayloadSchemaType.FLOAT) for name in float_fields]
        for name, schema in wanted:
            if name not in indexed:
                self.client.create_payload_index(self.collection, name, schema)

    def count(self) -> int:
        return int(self.client.count(self.collection).count)

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        self.client.upsert(
            self.collection,
            [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points],
        )

    def set_payload(self, where: Where, payload: dict[str, Any]) -> None:
        self.client.set_payload(
            self.collection, payload, points=models.FilterSelector(filter=_filter(where))
        )

    def delete(self, where: Where) -> None:
        self.client.delete(
            self.collection, points_selector=models.FilterSelector(filter=_filter(where))
        )

    def scroll(self, where: Where | None, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        offset: Any = None
        while True:
            records, offset = self.client.scroll(
                self.collection,
                scroll_filter=_filter(where) if where is not None else None,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=list(fields),
            )
            for record in records:
                yield dict(record.payload or {})
            if offset is None:
                return

    def query(self, vector: npt.NDArray[np.float32], where: Where | None, limit: int) -> list[Hit]:
        response = self.client.query_points(
            self.collection,
            query=vector.tolist(),
            query_filter=_filter(where) if where is not None else None,
            limit=limit,
            with_payload=True,
        )
        return [Hit(float(p.score), dict(p.payload or {})) for p in response.points]

    def optimize(self) -> None:
        """Nothing to do: a server optimises its segments in the background."""

    def close(self) -> None:
        self.client.close()


def _filter(where: Where) -> models.Filter:
    return models.Filter(
        must=[_condition(c) for c in where.must] or None,
        must_not=[_condition(c) for c in where.must_not] or None,
    )


def _condition(condition: Condition) -> models.FieldCondition:
    if isinstance(condition, Match):
        values = list(condition.values)
        match: models.MatchValue | models.MatchAny = (
            models.MatchValue(value=values[0]) if len(values) == 1 else models.MatchAny(any=values)
        )
        return models.FieldCondition(key=condition.key, match=match)
    return models.FieldCondition(
        key=condition.key, range=models.Range(gte=condition.gte, lte=condition.lte)
    )
