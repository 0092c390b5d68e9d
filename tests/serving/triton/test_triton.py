"""The local Triton against the in-process models: golden outputs, protocol, bad input."""

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException

from contracts.serving import CATBOOST_MODEL, INPUT_TENSOR, MODEL_NAMES, OUTPUT_TENSOR
from serving.triton.server import TritonPorts
from tests.serving.conftest import BATCHING, Predict, Registered, Repository
from vigil.processes import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]

# Served and in-process outputs differ only by float32 rounding (XGBoost predicts in float32
# either way; CatBoost sums leaves in float64 in process, ONNX Runtime in float32).
RTOL = 1e-5
ATOL = 1e-6


def _http(ports: TritonPorts) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(f"127.0.0.1:{ports.http}")


def _grpc(ports: TritonPorts) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(f"127.0.0.1:{ports.grpc}")


def _infer_http(ports: TritonPorts, model: str, rows: NDArray[Any]) -> NDArray[np.float32]:
    features = httpclient.InferInput(INPUT_TENSOR, list(rows.shape), "FP32")
    features.set_data_from_numpy(rows)
    result = _http(ports).infer(model, [features])
    return np.asarray(result.as_numpy(OUTPUT_TENSOR))


def _infer_grpc(ports: TritonPorts, model: str, rows: NDArray[Any]) -> NDArray[np.float32]:
    features = grpcclient.InferInput(INPUT_TENSOR, list(rows.shape), "FP32")
    features.set_data_from_numpy(rows)
    result = _grpc(ports).infer(model, [features])
    return np.asarray(result.as_numpy(OUTPUT_TENSOR))


def _post(ports: TritonPorts, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{ports.http}{path}",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _json_infer(shape: list[int], datatype: str, data: list[float]) -> bytes:
    tensor = {"name": INPUT_TENSOR, "shape": shape, "datatype": datatype, "data": data}
    return json.dumps({"inputs": [tensor]}).encode()  # NaN/Infinity as JSON literals


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_served_probabilities_equal_the_in_process_model(
    model: str,
    triton: ServerProcess,
    triton_ports: TritonPorts,
    registered: Registered,
    in_process: dict[str, Predict],
) -> None:
    rows = registered.rows
    expected = in_process[model](rows)
    assert expected.std() > 0.01  # the holdout holds both quiet and anomalous rows

    for served in (_infer_http(triton_ports, model, rows), _infer_grpc(triton_ports, model, rows)):
        assert served.shape == (len(rows), 1)
        np.testing.assert_allclose(served[:, 0], expected, rtol=RTOL, atol=ATOL)

    one = _infer_grpc(triton_ports, model, rows[:1])
    np.testing.assert_allclose(one[:, 0], expected[:1], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_a_max_batch_request_is_served_whole(
    model: str,
    triton: ServerProcess,
    triton_ports: TritonPorts,
    registered: Registered,
    in_process: dict[str, Predict],
) -> None:
    rows = np.resize(registered.rows, (BATCHING.max_batch_size, registered.rows.shape[1]))
    served = _infer_grpc(triton_ports, model, rows)
    np.testing.assert_allclose(served[:, 0], in_process[model](rows), rtol=RTOL, atol=ATOL)

    too_many = np.resize(rows, (BATCHING.max_batch_size + 1, rows.shape[1]))
    with pytest.raises(InferenceServerException, match=f"batch-size must be <= {len(rows)}"):
        _infer_grpc(triton_ports, model, too_many)


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(
    triton: ServerProcess,
    triton_ports: TritonPorts,
    registered: Registered,
    in_process: dict[str, Predict],
) -> None:
    def statistics() -> tuple[int, int]:
        stats = _grpc(triton_ports).get_inference_statistics(CATBOOST_MODEL, as_json=True)
        model = stats["model_stats"][0]
        return int(model["inference_count"]), int(model["execution_count"])

    inferences_before, executions_before = statistics()
    rows = registered.rows[:48]
    sizes = [1 + i % 3 for i in range(16)]  # requests of 1 to 3 rows
    starts = np.cumsum([0, *sizes[:-1]])
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(
            pool.map(
                lambda s: _infer_grpc(triton_ports, CATBOOST_MODEL, rows[s[0] : s[0] + s[1]]),
                zip(starts, sizes, strict=True),
            )
        )
    expected = in_process[CATBOOST_MODEL](rows)
    for start, size, served in zip(starts, sizes, results, strict=True):
        np.testing.assert_allclose(
            served[:, 0], expected[start : start + size], rtol=RTOL, atol=ATOL
        )
    inferences, executions = statistics()
    assert inferences - inferences_before == sum(sizes)
    assert executions - executions_before < len(sizes)  # the dynamic batcher merged requests


def test_health_metadata_config_and_metrics(
    triton: ServerProcess, triton_ports: TritonPorts, repository: Repository
) -> None:
    client = _http(triton_ports)
    assert client.is_server_live()
    assert client.is_server_ready()
    features = len(repository.summary.feature_names)
    for model in repository.summary.models:
        assert client.is_model_ready(model.name, str(model.version))
        metadata = client.get_model_metadata(model.name)
        assert metadata["versions"] == [str(model.version)]
        assert metadata["inputs"] == [
            {"name": INPUT_TENSOR, "datatype": "FP32", "shape": [-1, features]}
        ]
        assert metadata["outputs"] == [
            {"name": OUTPUT_TENSOR, "datatype": "FP32", "shape": [-1, 1]}
        ]
        config = client.get_model_config(model.name)
        assert config["max_batch_size"] == BATCHING.max_batch_size
        batching = config["dynamic_batching"]
        assert batching["max_queue_delay_microseconds"] == BATCHING.max_queue_delay_microseconds
        assert [g["count"] for g in config["instance_group"]] == [BATCHING.instance_count]
        assert config["backend"] == "python"  # the local stand-in for fil / onnxruntime

    _infer_http(triton_ports, CATBOOST_MODEL, np.zeros((2, features), np.float32))
    with urllib.request.urlopen(f"http://127.0.0.1:{triton_ports.metrics}/metrics") as response:
        metrics = response.read().decode()
    assert f'nv_inference_request_success{{model="{CATBOOST_MODEL}",version="' in metrics
    assert "nv_inference_queue_duration_us" in metrics


def test_bad_input_is_a_4xx_with_a_reason_and_the_server_keeps_serving(
    triton: ServerProcess, triton_ports: TritonPorts, repository: Repository
) -> None:
    features = len(repository.summary.feature_names)
    path = f"/v2/models/{CATBOOST_MODEL}/infer"
    good = [0.5] * features
    nan_row = [float("nan"), *good[1:]]
    cases = {
        "wrong width": (path, _json_infer([1, features - 1], "FP32", good[1:]), "unexpected shape"),
        "no batch axis": (path, _json_infer([features], "FP32", good), "unexpected shape"),
        "wrong dtype": (path, _json_infer([1, features], "FP64", good), "expects 'FP32'"),
        "NaN": (path, _json_infer([1, features], "FP32", nan_row), "NaN or infinite"),
        "infinity": (
            path,
            _json_infer([2, features], "FP32", [*good, float("inf"), *good[1:]]),
            "NaN or infinite",
        ),
        "empty batch": (path, _json_infer([0, features], "FP32", []), "byte size mismatch"),
        "unknown model": (
            "/v2/models/no_such_model/infer",
            _json_infer([1, features], "FP32", good),
            "unknown model",
        ),
    }
    for case, (target, body, reason) in cases.items():
        status, answer = _post(triton_ports, target, body)
        assert 400 <= status < 500, f"{case}: {status} {answer}"
        assert reason in answer["error"], f"{case}: {answer}"

    # gRPC reports the same refusal as INVALID_ARGUMENT.
    with pytest.raises(InferenceServerException, match="NaN or infinite") as refused:
        _infer_grpc(triton_ports, CATBOOST_MODEL, np.full((3, features), np.nan, np.float32))
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"

    assert triton.process.poll() is None
    served = _infer_http(triton_ports, CATBOOST_MODEL, np.full((1, features), 0.5, np.float32))
    assert served.shape == (1, 1)


def test_a_bad_request_fails_alone_inside_a_dynamic_batch(
    triton: ServerProcess,
    triton_ports: TritonPorts,
    registered: Registered,
    in_process: dict[str, Predict],
) -> None:
    rows = registered.rows[:8]
    poisoned = rows.copy()
    poisoned[:, 0] = np.inf

    def infer(index: int) -> NDArray[np.float32] | str:
        batch = poisoned[index : index + 1] if index % 2 else rows[index : index + 1]
        try:
            return _infer_grpc(triton_ports, CATBOOST_MODEL, batch)
        except InferenceServerException as error:
            return str(error.message())

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(infer, range(8)))
    expected = in_process[CATBOOST_MODEL](rows)
    for index, result in enumerate(results):
        if index % 2:
            assert isinstance(result, str)
            assert "NaN or infinite" in result
        else:
            assert not isinstance(result, str), result
            np.testing.assert_allclose(result[:, 0], expected[index : index + 1], RTOL, ATOL)
