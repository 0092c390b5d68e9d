"""Feature drift: the serving rows of a rolling span against training's reference histograms.

Training logs, per feature, quantile bin edges and the training rows' count in each bin
(``contracts.serving.REFERENCE_ARTIFACT``). Serving rows are binned by the same rule
(``contracts.drift_reference``: the outer bins are open-ended), counts are kept per window and
summed over the span, and

- PSI = Σ (a − e) · ln(a / e)
- KL(serving ‖ training) = Σ a · ln(a / e)

over the bin shares a (serving) and e (training). Empty bins get a share of ``EPSILON`` so
both stay finite. PSI < 0.1 is usually read as stable, > 0.3 as drift worth acting on.
"""

from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

from contracts.drift_reference import bin_counts, inner_edges

EPSILON = 1e-4


def psi(actual: NDArray[Any], expected: NDArray[Any]) -> float:
    """Population stability index of two count (or share) vectors over the same bins."""
    a, e = _shares(actual), _shares(expected)
    return float(np.sum((a - e) * np.log(a / e)))


def kl_divergence(actual: NDArray[Any], expected: NDArray[Any]) -> float:
    """KL(actual ‖ expected) of two count (or share) vectors over the same bins."""
    a, e = _shares(actual), _shares(expected)
    return float(np.sum(a * np.log(a / e)))


def _shares(counts: NDArray[Any]) -> NDArray[np.float64]:
    total = float(np.sum(counts))
    shares = np.asarray(counts, np.float64) / total if total else np.zeros(len(counts))
    return np.maximum(shares, EPSILON)


class DriftMonitor:
    """Bin counts of the recent windows' rows per reference feature, and their drift."""

    def __init__(self, reference: Mapping[str, Any], span: timedelta) -> None:
        histograms: Mapping[str, Mapping[str, list[float]]] = reference["features"]
        self.span = span
        self.inner_edges = {name: inner_edges(h["edges"]) for name, h in histograms.items()}
        self.expected = {
            name: np.asarray(h["counts"], np.float64) for name, h in histograms.items()
        }
        self._windows: deque[tuple[datetime, dict[str, NDArray[np.int64]]]] = deque()

    def add(self, window_end: datetime, rows: pl.DataFrame) -> None:
        """Count a window's rows (columns named after features; others are ignored)."""
        present = set(rows.columns)
        counts = {
            name: bin_counts(edges, rows[name].to_numpy())
            for name, edges in self.inner_edges.items()
            if name in present
        }
        self._windows.append((window_end, counts))
        while self._windows and self._windows[0][0] <= window_end - self.span:
            self._windows.popleft()

    def drift(self) -> dict[str, tuple[float, float]]:
        """feature -> (PSI, KL divergence) over the span's rows; features with no rows left out."""
        totals: dict[str, NDArray[np.int64]] = {}
        for _, counts in self._windows:
            for name, values in counts.items():
                totals[name] = totals[name] + values if name in totals else values.copy()
        return {
            name: (psi(values, self.expected[name]), kl_divergence(values, self.expected[name]))
            for name, values in totals.items()
            if values.sum()
        }
