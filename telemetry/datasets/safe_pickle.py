"""Loading pickled NumPy arrays without letting the file run code.

``pickle.load`` calls whatever global a file names (``os.system`` included), so a pickle from
outside is loaded with an unpickler that resolves only the few NumPy globals an ndarray pickle
needs and refuses everything else.
"""

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from numpy.core.multiarray import _reconstruct  # type: ignore[attr-defined]  # private, untyped
from numpy.typing import NDArray

from telemetry.datasets.published_files import read_bytes

# The globals an ndarray pickle names; NumPy 2 writes ``numpy._core`` for ``numpy.core``.
_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that admits only the globals needed to rebuild a NumPy array."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: only NumPy arrays are allowed"
            ) from None


def load_numpy_array(path: Path) -> NDArray[Any]:
    """The NumPy array pickled in ``path`` (plain or ``.gz``).

    Raises:
        pickle.UnpicklingError: when the pickle names any global other than the NumPy array
            machinery, or does not hold an array of numbers.
    """
    try:
        value = NumpyOnlyUnpickler(io.BytesIO(read_bytes(path))).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise pickle.UnpicklingError(f"{path}: {exc}") from exc
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise pickle.UnpicklingError(f"{path}: expected a NumPy array of numbers")
    return value
