"""The binning rule of the drift reference (``contracts.serving.REFERENCE_ARTIFACT``).

Training counts its rows per quantile bin of each feature; the scorer counts serving rows
the same way and compares the shares. Both bin with the functions here, so a value lands in
the same bin on both sides: bin = ``searchsorted(edges[1:-1], value, side="right")``, so the
outer bins are open-ended and a value outside the training range still lands in a bin.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

# Written into the reference document, for a reader of the artefact.
BINNING = "bin = searchsorted(edges[1:-1], value, side='right')"


def inner_edges(edges: Sequence[float] | NDArray[Any]) -> NDArray[np.float64]:
    """The edges that split a feature's bins: all but the outer two."""
    return np.asarray(edges[1:-1], np.float64)


def bin_counts(inner: NDArray[np.float64], values: NDArray[Any]) -> NDArray[np.int64]:
    """The number of ``values`` in each of the ``len(inner) + 1`` bins ``inner`` splits."""
    return np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(inner) + 1)
