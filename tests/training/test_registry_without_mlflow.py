"""registry.py's functions that need no MLflow server: the drift reference and where the
aliases go (test_registry.py, all slow, registers against a real server).
"""

import numpy as np

from contracts.drift_reference import bin_counts, inner_edges
from training.registry import Holder, decide_aliases
from training.run_directory import reference_distributions


def test_reference_distributions_bin_every_training_row() -> None:
    features = np.column_stack([np.arange(1000.0), np.full(1000, 3.0)]).astype(np.float32)
    reference = reference_distributions(features, ["ramp", "constant"], bins=10)
    ramp, constant = reference["features"]["ramp"], reference["features"]["constant"]  # type: ignore[index]
    assert len(ramp["edges"]) == 11
    assert sum(ramp["counts"]) == 1000
    assert max(ramp["counts"]) - min(ramp["counts"]) <= 1
    assert constant == {"edges": [3.0, 3.0], "counts": [1000]}
    # The shared rule puts a serving-time value in a bin even outside the training range.
    outside = bin_counts(inner_edges(ramp["edges"]), np.array([-5.0, 5000.0]))
    assert outside.tolist() == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]


def _holder(kind: str, version: str, score: float) -> Holder:
    return Holder(kind, version, score)


def test_first_passing_run_takes_both_aliases() -> None:
    target, _ = decide_aliases([_holder("xgboost", "1", 0.9), _holder("catboost", "1", 0.8)], {})
    assert target == {
        "champion": _holder("xgboost", "1", 0.9),
        "challenger": _holder("catboost", "1", 0.8),
    }


def test_a_run_that_does_not_beat_the_champion_changes_nothing() -> None:
    current = {
        "champion": _holder("xgboost", "1", 0.9),
        "challenger": _holder("catboost", "1", 0.8),
    }
    target, decision = decide_aliases(
        [_holder("xgboost", "2", 0.9), _holder("catboost", "2", 0.7)], current
    )
    assert target == current
    assert "unchanged" in decision


def test_a_better_challenger_alone_moves_nothing() -> None:
    # The arms must read one run's detector: a new challenger beside an old champion would not.
    current = {
        "champion": _holder("xgboost", "1", 0.9),
        "challenger": _holder("catboost", "1", 0.8),
    }
    target, decision = decide_aliases(
        [_holder("xgboost", "2", 0.85), _holder("catboost", "2", 0.88)], current
    )
    assert target == current
    assert "unchanged" in decision


def test_a_new_champion_brings_its_run_mate_as_challenger() -> None:
    current = {
        "champion": _holder("catboost", "1", 0.8),
        "challenger": _holder("xgboost", "1", 0.7),
    }
    target, _ = decide_aliases(
        [_holder("catboost", "2", 0.85), _holder("xgboost", "2", 0.9)], current
    )
    assert target == {
        "champion": _holder("xgboost", "2", 0.9),
        "challenger": _holder("catboost", "2", 0.85),
    }


def test_a_lone_new_champion_serves_alone() -> None:
    # Its run mate failed its gates: the old challenger (another run's detector) is dropped.
    current = {
        "champion": _holder("xgboost", "1", 0.8),
        "challenger": _holder("catboost", "1", 0.7),
    }
    target, _ = decide_aliases([_holder("catboost", "3", 0.9)], current)
    assert target == {"champion": _holder("catboost", "3", 0.9), "challenger": None}


def test_no_passing_model_means_no_alias() -> None:
    target, decision = decide_aliases([], {})
    assert target == {"champion": None, "challenger": None}
    assert "gates" in decision
