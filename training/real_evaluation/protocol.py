"""The honest protocol of ``vigil evaluate`` on one entity: split, label budget, reviewer.

The entity's labelled series (SMD / ASD: the published test split; NAB: the whole series) is
cut in time: the first ``POOL_SHARE`` is the pool the review queue may ask labels from, the
rest is held out and never reaches training or threshold choice. The rows available for
training are the unlabelled history (SMD / ASD: the published train split) plus the pool; the
queue may reveal at most ``label_fraction`` of them.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

POOL_SHARE = 0.3


class HeldOutLabelError(RuntimeError):
    """Something asked for the label of a row outside the review pool."""


@dataclass(frozen=True)
class EntitySplit:
    """Row positions (in time order) of the three parts of one entity."""

    history: NDArray[np.int64]
    pool: NDArray[np.int64]
    held_out: NDArray[np.int64]

    @property
    def available(self) -> int:
        """Rows available for training: history and pool."""
        return len(self.history) + len(self.pool)


def split_entity(published_train: NDArray[Any]) -> EntitySplit:
    """History = the published train rows; the labelled rows after it = 30 % pool, 70 % held out.

    Raises:
        ValueError: when the labelled part is too short to split.
    """
    labelled = np.flatnonzero(~published_train)
    if len(labelled) < 10:
        raise ValueError(f"{len(labelled)} labelled rows: too few to split into pool and test")
    cut = int(np.floor(POOL_SHARE * len(labelled)))
    return EntitySplit(np.flatnonzero(published_train), labelled[:cut], labelled[cut:])


def label_budget(split: EntitySplit, label_fraction: float) -> int:
    """The most labels the review queue may reveal."""
    if not 0.0 < label_fraction <= 1.0:
        raise ValueError(f"label_fraction must lie in (0, 1], got {label_fraction}")
    return int(np.floor(label_fraction * split.available))


class Reviewer:
    """Answers the review queue from the hidden labels, for pool rows only, within budget."""

    def __init__(self, labels: NDArray[Any], split: EntitySplit, budget: int) -> None:
        self._labels = labels
        self._pool = set(split.pool.tolist())
        self.budget = budget
        self.revealed: list[int] = []

    def __call__(self, positions: NDArray[Any]) -> NDArray[np.int8]:
        outside = [int(p) for p in positions if int(p) not in self._pool]
        if outside:
            raise HeldOutLabelError(f"rows {outside[:5]} are not in the review pool")
        if len(self.revealed) + len(positions) > self.budget:
            raise HeldOutLabelError(
                f"the queue asked for {len(self.revealed) + len(positions)} labels; the budget "
                f"is {self.budget}"
            )
        self.revealed.extend(int(p) for p in positions)
        # Rows the dataset leaves unlabelled are answered "normal": a reviewer saw nothing.
        return np.asarray(np.maximum(self._labels[positions], 0), dtype=np.int8)
