"""The training config: YAML in, validated pydantic out, errors that name file and key."""

from pathlib import Path

import pytest
import yaml

from training.config import (
    DEFAULT_CONFIG_PATH,
    TrainingConfig,
    TrainingConfigError,
    load_training_config,
)


def test_default_file_matches_the_code_defaults() -> None:
    # The YAML is the documented config; it must not drift from the model's defaults.
    assert load_training_config() == TrainingConfig()


def test_default_file_lists_every_key() -> None:
    document = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    assert set(document) == set(TrainingConfig.model_fields)


def test_seed_parameters_are_the_defaults() -> None:
    config = TrainingConfig()
    assert (config.isolation_forest.n_estimators, config.isolation_forest.contamination) == (
        100,
        0.05,
    )
    assert config.review.label_fraction == 0.02
    assert config.threshold == "reviewed"
    assert (config.gates.min_f1, config.gates.min_precision) == (0.85, 0.90)
    assert config.split.method == "time"


def test_only_the_demo_configs_answer_the_queue_from_hidden_labels() -> None:
    # A real fleet has no hidden labels: outside a demo, only imported reviews teach the model.
    assert TrainingConfig().review.simulate_reviewer is False
    for demo in ("demo.yaml", "demo-dataset.yaml"):
        assert load_training_config(DEFAULT_CONFIG_PATH.with_name(demo)).review.simulate_reviewer


def test_a_partial_file_keeps_the_other_defaults(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("engine: dask\nxgboost:\n  max_depth: 6\n")
    config = load_training_config(path)
    assert config.engine == "dask"
    assert config.xgboost.max_depth == 6
    assert config.xgboost.learning_rate == 0.05


def test_an_empty_file_is_the_default_config(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_training_config(path) == TrainingConfig()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("xgboost:\n  max_dept: 4\n", "xgboost.max_dept"),
        ("gates:\n  min_f1: 1.5\n", "gates.min_f1"),
        ("split:\n  method: random\n", "split.method"),
        ("confidence:\n  high_anomaly_below: -0.2\n", "confidence"),
        ("split:\n  cv_folds: 1\n", "split.cv_folds"),
    ],
)
def test_a_bad_key_is_named_with_the_file(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TrainingConfigError, match=str(path)) as error:
        load_training_config(path)
    assert key in str(error.value)


def test_not_yaml_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("xgboost: [unclosed\n")
    with pytest.raises(TrainingConfigError, match="not valid YAML"):
        load_training_config(broken)
    with pytest.raises(TrainingConfigError, match="cannot read"):
        load_training_config(tmp_path / "absent.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(TrainingConfigError, match="mapping"):
        load_training_config(listing)
