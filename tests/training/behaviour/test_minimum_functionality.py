"""Minimum functionality: what the trained models must get right on the held-out test rows."""

import pytest

from training.run_directory import RunDirectory, TrainingSummary


def test_models_rank_above_the_isolation_forest_and_the_champion_passes_the_gates(
    trained: tuple[TrainingSummary, RunDirectory],
) -> None:
    summary, _ = trained
    isolation = summary.isolation_forest.pr_auc
    assert isolation is not None
    for evaluation in summary.evaluations.values():
        assert evaluation.metrics.pr_auc is not None
        assert evaluation.metrics.pr_auc > isolation, evaluation.kind
        assert evaluation.metrics.rows == 360
    champion = summary.evaluations["xgboost"]
    assert champion.passed_gates, champion.gate_failures
    assert champion.metrics.f1 > summary.isolation_forest.f1


def test_labelled_incidents_are_caught(trained: tuple[TrainingSummary, RunDirectory]) -> None:
    summary, _ = trained
    assert summary.evaluations["xgboost"].event_recall == pytest.approx(1.0)
    assert summary.evaluations["catboost"].event_recall == pytest.approx(1.0)
