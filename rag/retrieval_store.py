"""What the knowledge base needs of a vector engine, and the small filter language it speaks.

``rag.knowledge_base.KnowledgeBase`` is the one interface the explainer, the indexer and the
benchmark use; under it, a ``VectorStore`` is one of two real Qdrant engines:

- ``rag.retrieval_edge.EdgeStore``: Qdrant Edge, the Qdrant engine in-process on a folder
  (``qdrant_path``), with payload indexes: what a developer, the tests and the demo run;
- ``rag.retrieval_server.ServerStore``: a Qdrant server through qdrant-client (``qdrant_url``),
  the production path in the chart. The same class over qdrant-client's local mode is kept as
  the benchmark's "before" (a pure-Python stand-in that scans every point for a filter).

Filters are written once here (``Where``) and translated by each engine, so a condition the
explainer relies on cannot mean one thing on a laptop and another in production.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Match:
    """The payload field ``key`` holds one of ``values`` (keywords)."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Range:
    """The payload field ``key`` (a number) lies in ``[gte, lte]``; None leaves a side open."""

    key: str
    gte: float | None = None
    lte: float | None = None


Condition = Match | Range


@dataclass(frozen=True)
class Where:
    """Points matching every ``must`` condition and none of the ``must_not`` ones."""

    must: tuple[Condition, ...] = ()
    must_not: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class StoredPoint:
    """A point to write: its id (a UUID string), unit vector and payload."""

    id: str
    vector: list[float]
    payload: dict[str, Any]


@dataclass(frozen=True)
class Hit:
    """A search result: the stored payload and its cosine similarity to the query."""

    score: float
    payload: dict[str, Any]


class VectorStore(Protocol):
    """One collection of cosine vectors with payloads, on some Qdrant engine."""

    def exists(self) -> bool:
        """Whether the collection has been created (raises when the engine is unreachable)."""
        ...

    def create(
        self, dimension: int, keyword_fields: Sequence[str], float_fields: Sequence[str]
    ) -> None:
        """Create the collection, with payload indexes on the fields searches filter on."""
        ...

    def count(self) -> int:
        """Points in the collection (it must exist)."""
        ...

    def upsert(self, points: Sequence[StoredPoint]) -> None:
        """Write points, replacing those with the same ids."""
        ...

    def set_payload(self, where: Where, payload: dict[str, Any]) -> None:
        """Set the given payload fields on every matching point."""
        ...

    def delete(self, where: Where) -> None:
        """Delete every matching point."""
        ...

    def scroll(self, where: Where | None, fields: Sequence[str]) -> Iterator[dict[str, Any]]:
        """The chosen payload fields of every matching point (every point for None)."""
        ...

    def query(self, vector: npt.NDArray[np.float32], where: Where | None, limit: int) -> list[Hit]:
        """The ``limit`` matching points nearest to ``vector``, best first."""
        ...

    def optimize(self) -> None:
        """Bring the engine's indexes up to date after writes (no-op where it is automatic)."""
        ...

    def close(self) -> None:
        """Release the collection; later calls raise."""
        ...
