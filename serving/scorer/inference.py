"""Scoring rows over KServe v2 with tritonclient: through the A/B router, or straight to
Triton with the arm chosen here by the router's weights.

Both ways take the same code path: a request names a model, carries the instance as the
router's split key (``X-AB-Key``), and the model that answered is read back from the
response (``model_name``), so metrics are labelled by the arm that really scored the rows.
Through the router over HTTP the request names the router's model and the router picks the
arm; over gRPC (the model name is inside the protobuf body, out of nginx's reach) the arm's
model is asked from the router's ``/ab/assignment`` first. Without a router, ``choose_arm``
picks it per instance by the same weights, stable per instance as the router's split.
"""

import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from numpy.typing import NDArray

from contracts.serving import ASSIGNMENT_PATH, INPUT_TENSOR, KEY_HEADER, OUTPUT_TENSOR

# Sent with every request: the A/B router splits on it, so an instance stays on one arm.
AB_KEY_HEADER = KEY_HEADER.lower()  # gRPC metadata keys must be lowercase


@dataclass(frozen=True)
class Answer:
    """One request's probabilities, the model and version that answered, and its latency."""

    probabilities: NDArray[np.float64]
    model: str
    version: int | None
    latency_seconds: float


def choose_arm(instance_id: str, champion: str, challenger: str | None, weight: int) -> str:
    """``champion`` for ``weight`` percent of instances, else ``challenger``; stable per instance.

    CRC-32 rather than ``hash()``: the same instance gets the same arm in every process.
    """
    if challenger is None:
        return champion
    return champion if zlib.crc32(instance_id.encode()) % 100 < weight else challenger


def assigned_model(router: httpx.Client, instance_id: str) -> str:
    """The model of the arm the A/B router assigns ``instance_id`` (its ``/ab/assignment``).

    Raises:
        httpx.HTTPError: the router did not answer with an assignment.
    """
    # One client asks for every instance: the sticky cookie the router set on an earlier
    # answer would pin all of them to that instance's arm, so it is never sent back.
    router.cookies.clear()
    response = router.get(ASSIGNMENT_PATH, headers={AB_KEY_HEADER: instance_id})
    response.raise_for_status()
    return str(response.json()["model"])


class InferenceClient:
    """A KServe v2 client for one endpoint, over gRPC or HTTP; safe to share between threads.

    Each thread gets its own tritonclient client: the HTTP one (geventhttpclient) must not be
    shared across threads.
    """

    def __init__(
        self, url: str, protocol: Literal["grpc", "http"] = "grpc", timeout_s: float = 10.0
    ) -> None:
        self.url = url
        self.protocol = protocol
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()

    @property
    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            client = (
                grpcclient.InferenceServerClient(self.url)
                if self.protocol == "grpc"
                else httpclient.InferenceServerClient(
                    self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
                )
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def is_ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready())
        except Exception:  # tritonclient raises several types for a server that is down
            return False

    def infer(self, model: str, rows: NDArray[np.float32], instance_id: str) -> Answer:
        """The anomaly probability of each row, as answered by ``model`` (or the router).

        Raises:
            tritonclient.utils.InferenceServerException: the endpoint refused or failed.
        """
        module: Any = grpcclient if self.protocol == "grpc" else httpclient
        features = module.InferInput(INPUT_TENSOR, list(rows.shape), "FP32")
        features.set_data_from_numpy(rows)  # the detector's inputs: float32 already
        kwargs: dict[str, Any] = {"headers": {AB_KEY_HEADER: instance_id}}
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        started = time.perf_counter()
        result = self._client.infer(model, [features], **kwargs)
        latency = time.perf_counter() - started
        response = result.get_response()
        name, version = (
            (response.model_name, response.model_version)
            if self.protocol == "grpc"
            else (response["model_name"], response.get("model_version"))
        )
        probabilities = np.asarray(result.as_numpy(OUTPUT_TENSOR), np.float64).reshape(-1)
        return Answer(probabilities, str(name), int(version) if version else None, latency)

    def close(self) -> None:
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
