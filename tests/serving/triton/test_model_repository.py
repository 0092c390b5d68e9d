"""The Triton model repository built from MLflow's aliases: layout, configs, artifacts, S3."""

from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import xgboost as xgb
from mlflow import MlflowClient

from contracts.serving import (
    ALIASES,
    CATBOOST_MODEL,
    CHALLENGER,
    CHAMPION,
    INPUT_TENSOR,
    OUTPUT_TENSOR,
    REPOSITORY_SUMMARY,
    XGBOOST_MODEL,
)
from contracts.store import ObjectStore
from serving.triton.config import BatchingOptions, parse_pbtxt, to_pbtxt
from serving.triton.model_repository import (
    CONFIG_FILE,
    RepositoryBuildError,
    build_repository,
    read_summary,
)
from serving.triton.server import prepare_launch_repository
from tests.serving.conftest import BATCHING, Predict, Registered, Repository
from vigil.processes import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]


def _holders(client: MlflowClient) -> dict[str, str]:
    """alias -> registered model name, as MLflow has them now."""
    return {
        alias: name
        for name in (XGBOOST_MODEL, CATBOOST_MODEL)
        for alias in client.get_registered_model(name).aliases
    }


def test_repository_holds_each_alias_holder_with_a_config_that_parses_back(
    repository: Repository, registered: Registered
) -> None:
    summary = repository.summary
    assert summary.feature_names == registered.feature_names
    holders = _holders(MlflowClient(registered.tracking_uri))
    assert {m.alias: m.name for m in summary.models} == holders
    assert read_summary(ObjectStore.from_uri(str(repository.path))) == summary

    for model in summary.models:
        text = (repository.path / model.name / CONFIG_FILE).read_text()
        config = parse_pbtxt(text)
        assert to_pbtxt(config) == text
        assert config.name == model.name
        assert config.backend == {XGBOOST_MODEL: "fil", CATBOOST_MODEL: "onnxruntime"}[model.name]
        assert list(config.version_policy.specific.versions) == [model.version]
        assert (
            repository.path / model.name / str(model.version) / config.default_model_filename
        ).is_file()
        assert config.max_batch_size == BATCHING.max_batch_size
        assert [(i.name, list(i.dims)) for i in config.input] == [
            (INPUT_TENSOR, [len(summary.feature_names)])
        ]
        assert [(o.name, list(o.dims)) for o in config.output] == [(OUTPUT_TENSOR, [1])]
        assert config.dynamic_batching.max_queue_delay_microseconds == 20_000
        assert [group.count for group in config.instance_group] == [BATCHING.instance_count]

    fil = parse_pbtxt((repository.path / XGBOOST_MODEL / CONFIG_FILE).read_text())
    assert fil.default_model_filename == "xgboost.json"
    assert {k: v.string_value for k, v in fil.parameters.items()} == {
        "model_type": "xgboost_json",
        "output_class": "true",
        "predict_proba": "true",
    }


def test_artifacts_reproduce_the_registered_models(
    repository: Repository, registered: Registered, in_process: dict[str, Predict]
) -> None:
    rows = registered.rows
    versions = {model.name: model.version for model in repository.summary.models}
    onnx_path = repository.path / CATBOOST_MODEL / str(versions[CATBOOST_MODEL]) / "model.onnx"
    graph = onnx.load(str(onnx_path))
    assert "ZipMap" not in {node.op_type for node in graph.graph.node}
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_TENSOR]
    (probabilities,) = session.run([OUTPUT_TENSOR], {INPUT_TENSOR: rows})
    assert probabilities.shape == (len(rows), 1)
    np.testing.assert_allclose(probabilities[:, 0], in_process[CATBOOST_MODEL](rows), atol=1e-6)

    json_path = repository.path / XGBOOST_MODEL / str(versions[XGBOOST_MODEL]) / "xgboost.json"
    booster = xgb.Booster(model_file=str(json_path))
    np.testing.assert_array_equal(
        booster.inplace_predict(rows), in_process[XGBOOST_MODEL](rows).astype(np.float32)
    )


def _alias_versions(client: MlflowClient) -> dict[str, tuple[str, str]]:
    """alias -> (registered model name, version)."""
    return {
        alias: (name, version)
        for name in (XGBOOST_MODEL, CATBOOST_MODEL)
        for alias, version in client.get_registered_model(name).aliases.items()
    }


def _set_aliases(client: MlflowClient, aliases: dict[str, tuple[str, str]]) -> None:
    for alias, (name, _) in _alias_versions(client).items():
        client.delete_registered_model_alias(name, alias)
    for alias, (name, version) in aliases.items():
        client.set_registered_model_alias(name, alias, version)


@pytest.fixture
def swapped_aliases(registered: Registered) -> Iterator[MlflowClient]:
    """Champion and challenger swapped for one test, then put back."""
    client = MlflowClient(registered.tracking_uri)
    before = _alias_versions(client)
    _set_aliases(client, {CHAMPION: before[CHALLENGER], CHALLENGER: before[CHAMPION]})
    yield client
    _set_aliases(client, before)


def test_the_champion_may_be_either_kind(
    swapped_aliases: MlflowClient, registered: Registered, tmp_path: Path
) -> None:
    holders = _holders(swapped_aliases)
    summary = build_repository(registered.tracking_uri, str(tmp_path / "repo"))
    for alias in ALIASES:
        model = summary.model_for(alias)
        assert model is not None
        assert model.name == holders[alias]
        assert model.flavor == ("xgboost" if model.name == XGBOOST_MODEL else "catboost")


def test_no_champion_is_a_clear_error_and_writes_nothing(
    registered: Registered, tmp_path: Path
) -> None:
    client = MlflowClient(registered.tracking_uri)
    holder = _holders(client)[CHAMPION]
    version = client.get_registered_model(holder).aliases[CHAMPION]
    client.delete_registered_model_alias(holder, CHAMPION)
    try:
        with pytest.raises(RepositoryBuildError, match="holds the alias 'champion'"):
            build_repository(registered.tracking_uri, str(tmp_path / "repo"))
    finally:
        client.set_registered_model_alias(holder, CHAMPION, version)
    assert not (tmp_path / "repo").exists()


def test_repository_is_written_to_s3(
    aws_emulator: ServerProcess, registered: Registered, repository: Repository
) -> None:
    boto3.client("s3", endpoint_url=aws_emulator.url).create_bucket(Bucket="vigil-models")
    uri = "s3://vigil-models/triton"
    summary = build_repository(
        registered.tracking_uri, uri, batching=BATCHING, endpoint_url=aws_emulator.url
    )
    assert summary.models == repository.summary.models
    store = ObjectStore.from_uri(uri, endpoint_url=aws_emulator.url)
    local = sorted(
        str(p.relative_to(repository.path)) for p in repository.path.rglob("*") if p.is_file()
    )
    assert store.list_keys("") == local
    for key in local:
        if key != REPOSITORY_SUMMARY:  # the summary names its own location
            assert store.read_bytes(key) == (repository.path / key).read_bytes(), key
    assert read_summary(store).uri == uri


def test_launch_twins_keep_the_production_config_but_the_backend(
    repository: Repository, tmp_path: Path
) -> None:
    names = prepare_launch_repository(repository.path, tmp_path / "models", threads=1)
    assert names == sorted(model.name for model in repository.summary.models)
    for name in names:
        production = parse_pbtxt((repository.path / name / CONFIG_FILE).read_text())
        twin = parse_pbtxt((tmp_path / "models" / name / CONFIG_FILE).read_text())
        assert twin.backend == "python"
        assert Path(twin.parameters["artifact"].string_value).is_file()
        for field in ("input", "output", "max_batch_size", "dynamic_batching", "version_policy"):
            assert getattr(twin, field) == getattr(production, field), field
        version = production.version_policy.specific.versions[0]
        assert (tmp_path / "models" / name / str(version) / "model.py").is_file()


def test_launch_refuses_a_repository_whose_artifact_is_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="holds no model"):
        prepare_launch_repository(tmp_path, tmp_path / "models")
    config = parse_pbtxt('name: "m" version_policy { specific { versions: 3 } }')
    config.default_model_filename = "xgboost.json"
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / CONFIG_FILE).write_text(to_pbtxt(config))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_launch_repository(tmp_path, tmp_path / "models")


def test_batching_options_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        BatchingOptions(max_batch_size=0)
    with pytest.raises(ValueError, match="max_queue_delay"):
        BatchingOptions(max_queue_delay_microseconds=-1)
