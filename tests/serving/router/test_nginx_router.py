"""The A/B router: real nginx in front of real Triton.

The split, stickiness, the answering model's header, the rate limit, a weight change by
reload under load, gRPC through the router, and failover between two Tritons.
"""

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from numpy.typing import NDArray
from tritonclient.utils import InferenceServerException

from contracts.serving import (
    AB_MODEL,
    ARM_HEADER,
    ASSIGNMENT_PATH,
    CHALLENGER,
    CHAMPION,
    INPUT_TENSOR,
    KEY_HEADER,
    MODEL_HEADER,
    OUTPUT_TENSOR,
)
from serving.router.ab_config import AbTestConfig, RateLimitValues
from serving.router.nginx import (
    ACCESS_LOG,
    RouterConfig,
    reload_nginx,
    write_nginx_conf,
)
from serving.scorer.inference import assigned_model
from serving.triton.server import READY_PATH, TritonPorts
from tests.serving.conftest import Repository
from vigil.local_stack import start_router, start_triton
from vigil.processes import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]

AB_INFER = f"/v2/models/{AB_MODEL}/infer"
SPLIT_REQUESTS = 2000
SPLIT_TOLERANCE_POINTS = 3
THREADS = 8


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def model(self) -> str:
        return self.headers.get(MODEL_HEADER.lower(), "")

    @property
    def cookie(self) -> str | None:
        raw = self.headers.get("set-cookie")
        if raw is None:
            return None
        return SimpleCookie(raw)["ab_variant"].value


def _request(
    url: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> Reply:
    """One request on a fresh connection: every call is a new TCP client."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("POST" if body else "GET", path, body=body, headers=headers or {})
        response = connection.getresponse()
        received = {name.lower(): value for name, value in response.getheaders()}
        return Reply(response.status, received, response.read())
    finally:
        connection.close()


def _rows_body(feature_count: int, rows: int = 1, seed: int = 0) -> bytes:
    data = np.random.default_rng(seed).random((rows, feature_count), dtype=np.float32)
    tensor = {
        "name": INPUT_TENSOR,
        "shape": [rows, feature_count],
        "datatype": "FP32",
        "data": data.ravel().tolist(),
    }
    return json.dumps({"inputs": [tensor]}).encode()


def _infer(url: str, body: bytes, headers: dict[str, str] | None = None) -> Reply:
    return _request(url, AB_INFER, body, {"Content-Type": "application/json", **(headers or {})})


def _keyed_split(url: str, body: bytes) -> Counter[str]:
    """The models that answered SPLIT_REQUESTS new clients, each with its own stable key.

    Keys rather than random request ids make the split the same on every run.
    """
    with ThreadPoolExecutor(THREADS) as pool:
        replies = list(
            pool.map(
                lambda i: _infer(url, body, {KEY_HEADER: f"client-{i}"}), range(SPLIT_REQUESTS)
            )
        )
    assert {reply.status for reply in replies} == {200}
    # The header names the model that answered: Triton's own answer agrees.
    assert all(json.loads(reply.body)["model_name"] == reply.model for reply in replies)
    return Counter(reply.model for reply in replies)


def _share_points(counts: Counter[str], model: str) -> float:
    return 100 * counts[model] / sum(counts.values())


@pytest.fixture(scope="module")
def body(repository: Repository) -> bytes:
    return _rows_body(len(repository.summary.feature_names))


def test_split_follows_the_weights_and_the_header_names_the_answering_model(
    ab_router: ServerProcess, router_config: RouterConfig, body: bytes
) -> None:
    counts = _keyed_split(ab_router.url, body)

    assert set(counts) == {router_config.champion_model, router_config.challenger_model}
    share = _share_points(counts, router_config.champion_model)
    assert abs(share - router_config.ab.champion_weight) <= SPLIT_TOLERANCE_POINTS


def test_new_clients_get_a_cookie_and_keep_their_arm(
    ab_router: ServerProcess, router_config: RouterConfig, body: bytes
) -> None:
    first_replies = [_infer(ab_router.url, body) for _ in range(100)]
    arms = [reply.cookie for reply in first_replies]
    assert set(arms) == {CHAMPION, CHALLENGER}  # no cookie, no key: a weighted coin flip
    model_of = {CHAMPION: router_config.champion_model, CHALLENGER: router_config.challenger_model}
    for first in (arms.index(CHAMPION), arms.index(CHALLENGER)):
        arm = arms[first]
        assert first_replies[first].headers[ARM_HEADER.lower()] == arm
        cookie = {"Cookie": f"ab_variant={arm}"}
        replies = [_infer(ab_router.url, body, cookie) for _ in range(50)]
        assert {reply.model for reply in replies} == {model_of[arm]}
        assert {reply.cookie for reply in replies} == {None}  # already set: not sent again


def test_health_metadata_and_metrics_pass_through(ab_router: ServerProcess) -> None:
    assert _request(ab_router.url, READY_PATH).status == 200
    metadata = json.loads(_request(ab_router.url, f"/v2/models/{AB_MODEL}").body)
    assert metadata["inputs"][0]["name"] == INPUT_TENSOR
    metrics = _request(ab_router.url, "/metrics").body.decode()
    assert "nv_inference_request_success" in metrics


# Triton routes the A/B endpoint must not expose (Triton's admin APIs, other views of the
# model): answered 404 by the router itself, never passed to Triton.
REFUSED_ROUTES = [
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/xgboost_anomaly/unload"),
    ("POST", "/v2/repository/models/xgboost_anomaly/load"),
    ("GET", "/v2/logging"),
    ("POST", "/v2/logging"),
    ("GET", "/v2/trace/setting"),
    ("GET", "/v2/systemsharedmemory/status"),
    ("GET", "/v2/cudasharedmemory/status"),
    ("GET", f"/v2/models/{AB_MODEL}/stats"),
    ("GET", f"/v2/models/{AB_MODEL}/config"),
    ("GET", "/v2/models/stats"),
    ("GET", "/v2"),
]


@pytest.mark.parametrize(("method", "path"), REFUSED_ROUTES)
def test_triton_admin_and_other_routes_are_refused(
    ab_router: ServerProcess, method: str, path: str
) -> None:
    reply = httpx.request(method, ab_router.url + path, timeout=10)
    assert reply.status_code == 404, (path, reply.text)
    assert "not served here" in reply.json()["error"]  # nginx's answer, not Triton's


def test_models_by_their_own_name_bypass_no_split(
    ab_router: ServerProcess, router_config: RouterConfig, body: bytes
) -> None:
    """Only the A/B model is served: a client cannot pick the champion (or the challenger)
    by name, nor read its metadata; the A/B route itself still answers."""
    for model in (router_config.champion_model, router_config.challenger_model):
        direct = _request(
            ab_router.url, f"/v2/models/{model}/infer", body, {"Content-Type": "application/json"}
        )
        assert direct.status == 404, direct.body
        assert _request(ab_router.url, f"/v2/models/{model}").status == 404
        versioned = _request(ab_router.url, f"/v2/models/{model}/versions/1/infer", body)
        assert versioned.status == 404
    assert _infer(ab_router.url, body).status == 200
    # The A/B route takes POST only (403 from the router's limit_except).
    assert _request(ab_router.url, AB_INFER).status == 403


def test_grpc_admin_rpcs_are_refused(ab_router: ServerProcess, router_config: RouterConfig) -> None:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{router_config.grpc_port}")
    assert client.is_server_ready()
    for call in (
        client.get_model_repository_index,
        lambda: client.unload_model(router_config.champion_model),
        client.get_log_settings,
        client.get_trace_settings,
        client.get_system_shared_memory_status,
        lambda: client.get_inference_statistics(router_config.champion_model),
        lambda: client.get_model_config(router_config.champion_model),
    ):
        with pytest.raises(InferenceServerException, match="PERMISSION_DENIED"):
            call()
    assert client.is_model_ready(router_config.champion_model)  # nothing was unloaded


def test_grpc_through_the_router_scores_on_the_assigned_model(
    ab_router: ServerProcess, triton_ports: TritonPorts, router_config: RouterConfig
) -> None:
    metadata = json.loads(_request(ab_router.url, f"/v2/models/{AB_MODEL}").body)
    rows = np.random.default_rng(1).random((4, metadata["inputs"][0]["shape"][1]), np.float32)
    assignment = json.loads(
        _request(ab_router.url, ASSIGNMENT_PATH, None, {KEY_HEADER: "i-1"}).body
    )
    assert assignment == json.loads(
        _request(ab_router.url, ASSIGNMENT_PATH, None, {KEY_HEADER: "i-1"}).body
    )  # a key keeps its arm

    def score(address: str) -> NDArray[np.float32]:
        features = grpcclient.InferInput(INPUT_TENSOR, list(rows.shape), "FP32")
        features.set_data_from_numpy(rows)
        client = grpcclient.InferenceServerClient(address)
        result = client.infer(assignment["model"], [features])
        return np.asarray(result.as_numpy(OUTPUT_TENSOR))

    through_router = score(f"127.0.0.1:{router_config.grpc_port}")
    np.testing.assert_array_equal(through_router, score(f"127.0.0.1:{triton_ports.grpc}"))


def test_rate_limit_answers_429(
    triton: ServerProcess,
    router_config: RouterConfig,
    body: bytes,
    tmp_path: Path,
) -> None:
    limited = router_config.model_copy(
        update={
            "ab": router_config.ab.model_copy(
                update={"rate_limit": RateLimitValues(requests_per_second=2, burst=3)}
            ),
            "grpc_upstreams": [],
            "grpc_port": None,
            "http_port": free_port(),
        }
    )
    with _router(limited, tmp_path) as router:
        statuses = Counter(_infer(router.url, body).status for _ in range(20))
        refused = _infer(router.url, body)
        health = _request(router.url, READY_PATH).status
    assert statuses[429] >= 10
    assert statuses[200] >= 4  # the rate plus the burst got through
    assert refused.status == 429
    assert "rate limit" in json.loads(refused.body)["error"]
    assert health == 200  # health checks are not rate limited


def test_reload_with_new_weights_drops_no_request(
    triton: ServerProcess, router_config: RouterConfig, body: bytes, tmp_path: Path
) -> None:
    config = router_config.model_copy(
        update={"grpc_upstreams": [], "grpc_port": None, "http_port": free_port()}
    )
    even = config.model_copy(update={"ab": AbTestConfig(champion_weight=50, challenger_weight=50)})
    with _router(config, tmp_path) as router, _background_load(router.url, body) as during:
        write_nginx_conf(even, tmp_path)
        reload_nginx(tmp_path)
        counts = _keyed_split(router.url, body)

    share = _share_points(counts, config.champion_model)
    assert abs(share - 50) <= SPLIT_TOLERANCE_POINTS
    assert len(during) > 100
    assert Counter(during) == {200: len(during)}  # every request in flight around the reload


def test_killing_one_of_two_tritons_under_load_loses_under_one_percent(
    triton: ServerProcess,
    triton_ports: TritonPorts,
    repository: Repository,
    router_config: RouterConfig,
    body: bytes,
    tmp_path: Path,
) -> None:
    second_ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    second = start_triton(repository.path, second_ports, tmp_path, name="triton-2")
    config = router_config.model_copy(
        update={
            "http_upstreams": [f"127.0.0.1:{triton_ports.http}", f"127.0.0.1:{second_ports.http}"],
            "grpc_upstreams": [],
            "grpc_port": None,
            "http_port": free_port(),
        }
    )
    prefix = tmp_path / "router"
    try:
        with _router(config, prefix) as router, _background_load(router.url, body) as statuses:
            _wait_for(lambda: len(statuses) >= 300)
            second.process.kill()  # the launcher; its tritonserver gets SIGTERM with it
            second.process.wait()
            done = len(statuses)
            _wait_for(lambda: len(statuses) >= done + 700)
    finally:
        second.stop()

    errors = sum(status != 200 for status in statuses)
    assert errors / len(statuses) < 0.01, Counter(statuses)
    upstreams = Counter(
        json.loads(line)["upstream"] for line in (prefix / ACCESS_LOG).read_text().splitlines()
    )
    assert any(str(second_ports.http) in upstream for upstream in upstreams)  # it did serve


@contextmanager
def _router(config: RouterConfig, prefix: Path) -> Iterator[ServerProcess]:
    """nginx under ``prefix`` for the length of a with-block."""
    prefix.mkdir(parents=True, exist_ok=True)
    server = start_router(config, prefix, prefix)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def _background_load(url: str, body: bytes) -> Iterator[list[int]]:
    """THREADS clients sending requests until the block ends; yields the statuses so far
    (0: the connection failed)."""
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                statuses.append(_infer(url, body).status)
            except OSError:
                statuses.append(0)

    threads = [threading.Thread(target=client) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: len(statuses) >= 50)
        yield statuses
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_one_scorer_client_gets_each_instances_own_arm(ab_router: ServerProcess) -> None:
    """The scorer asks /ab/assignment for every instance through one HTTP client: the cookie
    the router sets must not pin all instances to the first one's arm."""

    with httpx.Client(base_url=ab_router.url) as router:
        first = [assigned_model(router, f"i-{n:04d}") for n in range(40)]
        again = [assigned_model(router, f"i-{n:04d}") for n in range(40)]
    assert first == again
    assert 0.4 < Counter(first).most_common(1)[0][1] / len(first) < 0.95
