"""Load on the A/B endpoint: each user is a client scoring feature rows through the router.

A user keeps its arm through the router's cookie, and every ``--requests-per-client``
requests drops it and comes back as a new client, so both arms get traffic the way the
weights say. Requests are reported per answering model (``infer <model>``, from the
router's response header), so locust's stats and CSV hold per-arm latencies and failures.

Rows are random FP32 vectors with as many features as the served model takes, read once
from the endpoint's metadata (the repository's feature count, as Triton serves it).

    locust -f serving/loadtest/locustfile.py --headless --host http://127.0.0.1:8080 -u 10 -t 60s
"""

import json
import urllib.request
from typing import Any

import numpy as np
from locust import FastHttpUser, events, task
from locust.env import Environment

from contracts.serving import AB_MODEL, INPUT_TENSOR, MODEL_HEADER
from serving.loadtest.run import REQUEST_NAME

INFER_PATH = f"/v2/models/{AB_MODEL}/infer"
METADATA_PATH = f"/v2/models/{AB_MODEL}"
# Distinct request bodies per user, built up front so the load generator spends its CPU on
# sending, not on numpy and JSON.
BODIES_PER_USER = 64


def _add_options(parser: Any) -> None:
    parser.add_argument("--rows-per-request", type=int, default=1, help="rows in each request")
    parser.add_argument(
        "--requests-per-client",
        type=int,
        default=20,
        help="requests a user sends before it drops its cookie and comes back as a new client",
    )


events.init_command_line_parser.add_listener(_add_options)


def feature_count(host: str) -> int:
    """The number of features the A/B endpoint's model takes (input ``[-1, N]``)."""
    with urllib.request.urlopen(host.rstrip("/") + METADATA_PATH, timeout=10) as response:
        metadata = json.load(response)
    (tensor,) = [t for t in metadata["inputs"] if t["name"] == INPUT_TENSOR]
    return int(tensor["shape"][-1])


def request_bodies(features: int, rows: int, count: int) -> list[str]:
    """KServe v2 JSON infer requests, each with ``rows`` random rows."""
    rng = np.random.default_rng()
    bodies = []
    for _ in range(count):
        data = rng.random((rows, features), dtype=np.float32)
        tensor = {
            "name": INPUT_TENSOR,
            "shape": [rows, features],
            "datatype": "FP32",
            "data": data.ravel().tolist(),
        }
        bodies.append(json.dumps({"inputs": [tensor]}))
    return bodies


class AbClient(FastHttpUser):
    """A client of the A/B endpoint, sending requests back to back."""

    environment: Environment

    def on_start(self) -> None:
        options = self.environment.parsed_options
        assert options is not None
        assert self.host is not None
        self.rows_per_request = int(options.rows_per_request)
        self.requests_per_client = int(options.requests_per_client)
        features = feature_count(self.host)
        self.bodies = request_bodies(features, self.rows_per_request, BODIES_PER_USER)
        self.sent = 0

    @task
    def infer(self) -> None:
        body = self.bodies[self.sent % len(self.bodies)]
        with self.client.post(
            INFER_PATH,
            data=body,
            headers={"Content-Type": "application/json"},
            name=REQUEST_NAME,
            catch_response=True,
        ) as response:
            model = response.headers.get(MODEL_HEADER) if response.headers else None
            response.request_meta["name"] = f"{REQUEST_NAME} {model or 'unrouted'}"
            if response.status_code == 200 and not model:
                response.failure(f"no {MODEL_HEADER} header: not the A/B router?")
        self.sent += 1
        if self.sent % self.requests_per_client == 0:
            self.client.cookiejar.clear()
