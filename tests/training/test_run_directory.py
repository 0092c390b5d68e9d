"""The run directory a training run leaves for registration."""

import json

from contracts.features import TIME_FEATURES, feature_columns
from tests.training.conftest import METRICS
from training.run_directory import RunDirectory, TrainingSummary, load_detector


def test_run_directory_holds_everything_registration_needs(
    trained: tuple[TrainingSummary, RunDirectory],
) -> None:
    summary, run_dir = trained
    for path in (
        run_dir.run_record,
        run_dir.summary,
        run_dir.config,
        run_dir.holdout,
        run_dir.model_path("xgboost"),
        run_dir.model_path("catboost"),
        run_dir.report_dir / "report.html",
        run_dir.report_dir / "roc.png",
        run_dir.report_dir / "xgboost_confusion.png",
    ):
        assert path.exists(), path
    inputs = load_detector(run_dir)
    assert inputs.feature_names == feature_columns(METRICS)
    assert json.loads(run_dir.features.read_text()) == inputs.input_names
    reference = json.loads(run_dir.reference.read_text())
    # Calendar columns say when a row is, not how the fleet behaves: no drift reference.
    assert set(reference["features"]) == set(feature_columns(METRICS)) - set(TIME_FEATURES)
    assert reference["rows"] == summary.split_sizes["train"] + summary.split_sizes["validation"]
    report = (run_dir.report_dir / "report.html").read_text()
    assert "isolation forest alone" in report
    assert "label budget" in report
    assert TrainingSummary.model_validate_json(run_dir.summary.read_text()) == summary
