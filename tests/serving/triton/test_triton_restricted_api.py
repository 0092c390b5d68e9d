"""Triton's restricted admin APIs, on the real server with the options the chart passes.

The chart starts Triton with ``restricted_api_args`` (the key from a Secret); here the local
Triton runs with the same options on the session's repository: the admin APIs (model
repository, config, statistics, trace, logging, shared memory) refuse a request without the
key, over HTTP and gRPC, and accept it with the key; inference, metadata and health need none.
"""

import json
import secrets
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from contracts.serving import INPUT_TENSOR
from serving.router.nginx import arm_models
from serving.triton.server import (
    ADMIN_KEY_HEADER,
    GRPC_ADMIN_KEY_HEADER,
    READY_PATH,
    TritonPorts,
)
from tests.serving.conftest import Repository
from vigil.local_stack import start_triton
from vigil.processes import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]

ADMIN_KEY_ENV = "VIGIL_TEST_TRITON_ADMIN_KEY"


@pytest.fixture(scope="module")
def admin_key() -> str:
    return secrets.token_urlsafe(30)


@pytest.fixture(scope="module")
def restricted(
    repository: Repository,
    admin_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, TritonPorts]]:
    """A second local Triton on the session's repository, its admin APIs behind the key."""
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    with pytest.MonkeyPatch.context() as env:
        env.setenv(ADMIN_KEY_ENV, admin_key)  # inherited by the launcher, never in its argv
        server = start_triton(
            repository.path,
            ports,
            tmp_path_factory.mktemp("triton-restricted"),
            admin_key_env=ADMIN_KEY_ENV,
            name="triton-restricted",
        )
    yield server, ports
    server.stop()


ADMIN_ROUTES = [
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/{model}/load"),
    ("GET", "/v2/models/{model}/config"),
    ("GET", "/v2/models/{model}/stats"),
    ("GET", "/v2/logging"),
    ("GET", "/v2/trace/setting"),
    ("GET", "/v2/systemsharedmemory/status"),
    ("GET", "/v2/cudasharedmemory/status"),
]


@pytest.mark.parametrize(("method", "template"), ADMIN_ROUTES)
def test_http_admin_apis_need_the_key(
    restricted: tuple[ServerProcess, TritonPorts],
    repository: Repository,
    admin_key: str,
    method: str,
    template: str,
) -> None:
    server, _ = restricted
    champion, _ = arm_models(repository.summary)
    url = server.url + template.format(model=champion)
    refused = httpx.request(method, url, timeout=30)
    assert refused.status_code == 403, refused.text
    assert ADMIN_KEY_HEADER in refused.json()["error"]
    wrong = httpx.request(method, url, headers={ADMIN_KEY_HEADER: "not-the-key"}, timeout=30)
    assert wrong.status_code == 403
    allowed = httpx.request(method, url, headers={ADMIN_KEY_HEADER: admin_key}, timeout=30)
    assert allowed.status_code != 403, allowed.text


def test_grpc_admin_apis_need_the_key(
    restricted: tuple[ServerProcess, TritonPorts], repository: Repository, admin_key: str
) -> None:
    _, ports = restricted
    champion, _ = arm_models(repository.summary)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{ports.grpc}")
    with pytest.raises(InferenceServerException, match="restricted"):
        client.get_model_repository_index()
    with pytest.raises(InferenceServerException, match="restricted"):
        client.get_inference_statistics(champion)
    with pytest.raises(InferenceServerException, match="restricted"):
        client.unload_model(champion)
    index = client.get_model_repository_index(headers={GRPC_ADMIN_KEY_HEADER: admin_key})
    assert champion in {model.name for model in index.models}
    assert client.is_model_ready(champion)  # the refused unload did nothing


def test_inference_metadata_and_health_need_no_key(
    restricted: tuple[ServerProcess, TritonPorts], repository: Repository
) -> None:
    server, ports = restricted
    champion, _ = arm_models(repository.summary)
    assert httpx.get(server.url + READY_PATH, timeout=10).status_code == 200
    metadata = httpx.get(f"{server.url}/v2/models/{champion}", timeout=10).json()
    features = metadata["inputs"][0]["shape"][-1]
    rows = np.random.default_rng(2).random((2, features), np.float32)
    body = {"inputs": [{"name": INPUT_TENSOR, "shape": [2, features], "datatype": "FP32"}]}
    body["inputs"][0]["data"] = rows.ravel().tolist()
    reply = httpx.post(
        f"{server.url}/v2/models/{champion}/infer", content=json.dumps(body), timeout=30
    )
    assert reply.status_code == 200, reply.text
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{ports.grpc}")
    features_input = grpcclient.InferInput(INPUT_TENSOR, list(rows.shape), "FP32")
    features_input.set_data_from_numpy(rows)
    assert client.infer(champion, [features_input]).get_response().model_name == champion
