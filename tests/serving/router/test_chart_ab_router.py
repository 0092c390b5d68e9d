"""The chart's A/B sidecar, run for real: the nginx.conf the chart renders (its ConfigMap),
loaded by the local nginx in front of the session's Triton.

Each arm's listener sends the A/B route to its own model and serves nothing else of Triton:
the model repository, logging, trace, shared memory and the models by their own names are
refused. Only what a container needs is changed: paths under a temporary folder instead of
/tmp, listeners on loopback and free ports (through the chart's own values).
"""

import json
import re
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from contracts.serving import AB_MODEL, ARM_HEADER, INPUT_TENSOR, MODEL_HEADER
from serving.router.nginx import arm_models, check_nginx_conf, nginx_binary
from serving.triton.server import READY_PATH, TritonPorts
from tests.ops.conftest import find, render
from tests.serving.conftest import Repository
from vigil.processes import ServerProcess, free_port, start_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]

AB_INFER = f"/v2/models/{AB_MODEL}/infer"


@pytest.fixture(scope="module")
def arm_urls(
    triton: ServerProcess,
    triton_ports: TritonPorts,
    repository: Repository,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """The sidecar of the chart's Triton pod, as rendered: {arm: listener URL}."""
    champion, challenger = arm_models(repository.summary)
    assert challenger is not None
    ports = {"champion": free_port(), "challenger": free_port()}
    manifests = render(
        {
            "triton": {
                "ports": {"http": triton_ports.http},
                "abRouter": {
                    "championPort": ports["champion"],
                    "challengerPort": ports["challenger"],
                    "models": {"champion": champion, "challenger": challenger},
                },
            }
        }
    )
    conf = find(manifests, "ConfigMap", "vigil-ab-router")["data"]["nginx.conf"]
    prefix = tmp_path_factory.mktemp("chart-sidecar")
    (prefix / "logs").mkdir()  # nginx opens its default error log before reading the conf
    conf = conf.replace("/tmp/", f"{prefix}/")
    conf = re.sub(r"listen (\d+);", r"listen 127.0.0.1:\1;", conf)
    conf_path = prefix / "nginx.conf"
    conf_path.write_text(conf)
    check_nginx_conf(conf_path, prefix)
    argv = [nginx_binary(), "-c", str(conf_path), "-p", f"{prefix}/", "-g", "daemon off;"]
    urls = {arm: f"http://127.0.0.1:{port}" for arm, port in ports.items()}
    server = start_server("chart-sidecar", argv, urls["champion"], "/nginx-health", prefix)
    yield urls
    server.stop()


@pytest.fixture(scope="module")
def infer_body(repository: Repository) -> bytes:
    rows = np.random.default_rng(0).random((2, len(repository.summary.feature_names)), np.float32)
    tensor = {"name": INPUT_TENSOR, "shape": list(rows.shape), "datatype": "FP32"}
    return json.dumps({"inputs": [{**tensor, "data": rows.ravel().tolist()}]}).encode()


def test_each_listener_answers_the_ab_route_with_its_arms_model(
    arm_urls: dict[str, str], repository: Repository, infer_body: bytes
) -> None:
    champion, challenger = arm_models(repository.summary)
    for arm, model in (("champion", champion), ("challenger", challenger)):
        reply = httpx.post(arm_urls[arm] + AB_INFER, content=infer_body, timeout=30)
        assert reply.status_code == 200, reply.text
        assert reply.json()["model_name"] == model
        assert reply.headers[ARM_HEADER] == arm
        assert reply.headers[MODEL_HEADER] == model
        metadata = httpx.get(arm_urls[arm] + f"/v2/models/{AB_MODEL}", timeout=10)
        assert metadata.json()["name"] == model
        assert metadata.json()["inputs"][0]["name"] == INPUT_TENSOR
        assert httpx.get(arm_urls[arm] + READY_PATH, timeout=10).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/repository/index"),
        ("POST", "/v2/repository/models/xgboost_anomaly/unload"),
        ("GET", "/v2/logging"),
        ("GET", "/v2/trace/setting"),
        ("GET", "/v2/systemsharedmemory/status"),
        ("GET", "/v2/cudasharedmemory/status"),
        ("GET", f"/v2/models/{AB_MODEL}/stats"),
        ("GET", "/v2"),
    ],
)
def test_everything_else_is_refused(arm_urls: dict[str, str], method: str, path: str) -> None:
    for url in arm_urls.values():
        reply = httpx.request(method, url + path, timeout=10)
        assert reply.status_code == 404, (url, path, reply.text)


def test_no_model_by_its_own_name(
    arm_urls: dict[str, str], repository: Repository, infer_body: bytes
) -> None:
    """A client of the challenger's arm cannot reach the champion by name (nor the reverse)."""
    for model in arm_models(repository.summary):
        for url in arm_urls.values():
            reply = httpx.post(f"{url}/v2/models/{model}/infer", content=infer_body, timeout=10)
            assert reply.status_code == 404, (url, model, reply.text)
    # The inference route takes POST only.
    assert httpx.get(arm_urls["champion"] + AB_INFER, timeout=10).status_code == 403


def test_the_sidecar_conf_needs_no_edit_but_paths_and_addresses() -> None:
    """The running copy differs from the chart's only where a container differs from here."""
    manifests = render({})
    conf = find(manifests, "ConfigMap", "vigil-ab-router")["data"]["nginx.conf"]
    assert re.findall(r"listen (\S+);", conf) == ["8080", "8081"]
    assert set(re.findall(r"(/tmp/\S*?);", conf)) == {
        "/tmp/nginx.pid",
        "/tmp/client_body",
        "/tmp/proxy",
        "/tmp/fastcgi",
        "/tmp/uwsgi",
        "/tmp/scgi",
    }
    assert "127.0.0.1:8000" in conf  # Triton in the same pod
