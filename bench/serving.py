"""Benchmark: one registered XGBoost model served three ways on this machine.

Run: ``.venv/bin/python -m bench.serving [--quick] [--model fleet|small]``. The model is
trained with ``training.pipeline.run_training`` and registered in a local MLflow:

- ``fleet`` (default): the model ``vigil demo`` registers as champion: the demo's simulated
  fleet (50 instances × 3 days) and training config, 353 features, 100 trees (a smaller fleet
  stops early at ~8 trees, not what the platform serves);
- ``small``: the training tests' synthetic fleet: 54 features, 7 trees, where a request's fixed
  cost dwarfs the prediction itself.

Then the same XGBoost model version is served

- in process: ``Booster.inplace_predict`` on the numpy rows (the limit, no network);
- by ``mlflow models serve --env-manager local`` (the peer a user would reach for), at its
  best: at each batch size, the fastest of its documented request formats (``dataframe_split``
  or ``inputs`` JSON, CSV, Parquet), picked in this run; MLflow's default single uvicorn worker,
  and for the concurrent clients also two (one per core). With more than one worker uvicorn
  leaves Nagle's algorithm on (Kludex/uvicorn#3149): every keep-alive request then waits
  ~40 ms for a delayed ACK, so one worker is its best for sequential requests. Bodies are
  encoded once up front, so the peer's figures leave out the client's encoding;
- by Triton behind the NGINX A/B router (ours, ``vigil.local_stack.start_serving``), called by
  model name through the router with ``serving.scorer.inference.InferenceClient`` (the scorer's
  client), over gRPC and over HTTP with binary tensors.

XGBoost runs on one thread everywhere, as in Triton's model instances: on this machine's two
shared cores, OpenMP with two threads made a Triton request 2-18 ms instead of ~1.5 ms.

Each is measured at batch 1 (p50/p99 over sequential requests: 1,000, or 200 with
``--quick``), at batch 1,024 (rows/s) and with 16 concurrent single-row clients
(requests/s). Batch 1,024 is measured in rounds that visit every path in turn, each for a
fixed time; the median round counts, so a burst of load from other jobs on the shared cores
hits every path alike. The rounds also take the hops apart: Triton called directly over HTTP
with binary tensors (tritonclient's default both ways), over HTTP with JSON tensors (body
encoded once, like the peer's) and over gRPC, then through nginx; and Triton's own time per
request from ``/v2/models/<model>/stats``: queue, compute input, compute infer (the
Python-backend twin's round trip to its stub process, and the prediction there), compute
output. Triton's answers are checked against the in-process probabilities first. Every server
is stopped at the end. Prints the tables and, last, the ratios of ours (gRPC through nginx):
``serving_throughput_vs_mlflow_serve`` (batch 1,024, target >= 10),
``serving_efficiency_vs_inprocess`` (batch 1,024, target >= 0.5),
``serving_concurrent_rps_vs_mlflow_serve`` (target >= 3) and
``serving_p99_ratio_vs_mlflow_serve`` (batch 1, target <= 0.7).
"""

import argparse
import io
import json
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import mlflow.xgboost
import numpy as np
import pandas as pd
import xgboost as xgb
from numpy.typing import NDArray

from contracts.serving import AB_MODEL, INPUT_TENSOR, XGBOOST_MODEL
from contracts.store import ObjectStore
from serving.scorer.inference import InferenceClient, assigned_model
from telemetry.feature_job import build_features
from telemetry.simulator.config import SimulationConfig
from telemetry.simulator.simulation import write_simulation
from tests.training.conftest import small_config, write_fleet_store
from training.config import load_training_config
from training.pipeline import run_training
from training.run_directory import RunDirectory, load_detector, load_holdout
from vigil.demo.run import DEMO_CONFIG_PATH, DemoConfig
from vigil.local_stack import start_local_mlflow, start_serving
from vigil.processes import ServerProcess, free_port, start_server, venv_tool
from vigil.stack import stop_stack

BATCH = 1_024
CONCURRENT_CLIENTS = 16
WARMUP_REQUESTS = 20
FORMAT_TRIALS = 12  # requests per request format when picking the peer's fastest
NO_GATES = {"min_f1": 0.0, "min_precision": 0.0}
XGBOOST_THREADS = 1  # as in each Triton model instance (`vigil serving triton`'s default --threads)
JSON_TYPE = "application/json"
# The request formats of MLflow's scoring server and their content types.
MLFLOW_FORMATS = {
    "dataframe_split": JSON_TYPE,
    "inputs": JSON_TYPE,
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
# Triton's per-model statistics: time per request in each stage, and in all ("success").
STAGES = ("queue", "compute_input", "compute_infer", "compute_output", "success")

IN_PROCESS = "in-process inplace_predict"
PEER = "mlflow models serve"
PEER_TWO_WORKERS = "mlflow models serve -w 2"
OURS = "nginx -> Triton (gRPC)"
OURS_HTTP = "nginx -> Triton (HTTP)"
DIRECT_HTTP = "Triton direct (HTTP)"
DIRECT_JSON = "Triton direct (HTTP JSON)"
DIRECT_GRPC = "Triton direct (gRPC)"

Predict = Callable[[NDArray[np.float32]], object]
Stats = dict[str, tuple[int, int]]  # stage -> (requests, nanoseconds), cumulative


@dataclass(frozen=True)
class Settings:
    sequential: int
    rounds: int
    round_seconds: float  # per path and round, at batch 1,024
    concurrent_seconds: float


@dataclass(frozen=True)
class BatchFigure:
    """Batch 1,024: the median round's seconds per request, and Triton's own split (ms)."""

    seconds: float
    triton_ms: dict[str, float] | None

    @property
    def rows_per_s(self) -> float:
        return BATCH / self.seconds


def registered_rows(tracking_uri: str, root: Path, model: str) -> NDArray[np.float32]:
    """Train and register both models on the chosen fleet; the run's holdout rows."""
    if model == "fleet":
        store = ObjectStore.from_uri(str(root / "fleet"))
        demo_fleet = DemoConfig()  # its defaults: the fleet the demo simulates
        simulation = SimulationConfig(
            instances=demo_fleet.instances,
            duration=timedelta(days=demo_fleet.days),
            seed=demo_fleet.seed,
        )
        write_simulation(store, simulation)
        build_features(store)
        demo = load_training_config(DEMO_CONFIG_PATH)
        config = demo.model_copy(update={"gates": demo.gates.model_copy(update=NO_GATES)})
    else:
        store = write_fleet_store(root / "fleet")
        config = small_config(gates=NO_GATES)
    run_path = root / "run"
    summary = run_training(store, config, tracking_uri, run_path, None)
    if summary.registration is None:
        raise SystemExit(f"registration failed: {summary.registration_error}")
    detector = load_detector(RunDirectory(run_path))
    features, _ = load_holdout(RunDirectory(run_path), detector.feature_names)
    return detector.inputs(features)  # what the scorer sends: the models' inputs


def start_mlflow_serve(
    model_uri: str, tracking_uri: str, log_dir: Path, workers: int
) -> ServerProcess:
    port = free_port()
    bin_dir = str(Path(venv_tool("mlflow")).parent)
    argv = [
        "env",
        f"PATH={bin_dir}:/usr/bin:/bin",  # mlflow serve runs its server by name
        f"MLFLOW_TRACKING_URI={tracking_uri}",
        f"OMP_NUM_THREADS={XGBOOST_THREADS}",
        venv_tool("mlflow"),
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-w",
        str(workers),
    ]
    name = f"mlflow-serve-{workers}"
    return start_server(name, argv, f"http://127.0.0.1:{port}", "/ping", log_dir, 180)


def mlflow_body(rows: NDArray[np.float32], names: list[str], request_format: str) -> bytes:
    """``rows`` as a body of MLflow's scoring server in ``request_format``."""
    frame = pd.DataFrame(rows, columns=names)
    if request_format == "dataframe_split":
        return json.dumps({"dataframe_split": {"columns": names, "data": rows.tolist()}}).encode()
    if request_format == "inputs":
        columns = {name: rows[:, i].tolist() for i, name in enumerate(names)}
        return json.dumps({"inputs": columns}).encode()
    if request_format == "csv":
        return frame.to_csv(index=False).encode()
    parquet = io.BytesIO()
    frame.to_parquet(parquet)
    return parquet.getvalue()


def post_predict(
    client: httpx.Client,
    path: str,
    content_type: str,
    encode: Callable[[NDArray[np.float32]], bytes],
) -> Predict:
    """A caller of ``path`` whose bodies are encoded once per distinct array."""
    bodies: dict[int, bytes] = {}

    def predict(rows: NDArray[np.float32]) -> object:
        body = bodies.get(id(rows))
        if body is None:
            body = bodies[id(rows)] = encode(rows)
        response = client.post(path, content=body, headers={"Content-Type": content_type})
        response.raise_for_status()
        return response.content

    return predict


def mlflow_serve_predict(url: str, names: list[str], formats: dict[int, str]) -> Predict:
    """The peer, sent each batch size (row count) in the request format ``formats`` names."""
    client = httpx.Client(
        base_url=url, timeout=60, limits=httpx.Limits(max_connections=CONCURRENT_CLIENTS)
    )

    def caller(request_format: str) -> Predict:
        def encode(rows: NDArray[np.float32]) -> bytes:
            return mlflow_body(rows, names, request_format)

        return post_predict(client, "/invocations", MLFLOW_FORMATS[request_format], encode)

    callers = {size: caller(request_format) for size, request_format in formats.items()}
    return lambda rows: callers[len(rows)](rows)


def format_timings(url: str, rows: NDArray[np.float32], names: list[str]) -> dict[str, float]:
    """Median ms per request of each request format for ``rows``, fastest first."""
    timings = {}
    for request_format in MLFLOW_FORMATS:
        predict = mlflow_serve_predict(url, names, {len(rows): request_format})
        timings[request_format] = statistics.median(timed(predict, rows, FORMAT_TRIALS)) * 1000
    return dict(sorted(timings.items(), key=lambda item: item[1]))


def json_tensor_predict(url: str) -> Predict:
    """Triton over HTTP with the input and output as JSON tensors (KServe v2 without the
    binary extension); the body is encoded once per distinct array."""

    def encode(rows: NDArray[np.float32]) -> bytes:
        tensor = {
            "name": INPUT_TENSOR,
            "shape": list(rows.shape),
            "datatype": "FP32",
            "data": rows.ravel().tolist(),
        }
        return json.dumps({"inputs": [tensor]}).encode()

    client = httpx.Client(base_url=f"http://{url}", timeout=60)
    return post_predict(client, f"/v2/models/{XGBOOST_MODEL}/infer", JSON_TYPE, encode)


def triton_predict(
    client: InferenceClient, model: str = XGBOOST_MODEL, key: str = "bench"
) -> Predict:
    def predict(rows: NDArray[np.float32]) -> object:
        return client.infer(model, rows, key).probabilities

    return predict


def champion_key(router_url: str) -> str:
    """An A/B key the router sends to the XGBoost champion: over HTTP the router serves only
    the A/B model, so the benchmark pins its requests to the arm it compares."""
    with httpx.Client(base_url=f"http://{router_url}", timeout=10) as router:
        for n in range(200):
            if assigned_model(router, f"bench-{n}") == XGBOOST_MODEL:
                return f"bench-{n}"
    raise SystemExit(f"no key of 200 is assigned to {XGBOOST_MODEL}")


def triton_stats(http_url: str) -> Stats:
    """Triton's cumulative per-stage statistics of the benchmarked model."""
    answer = httpx.get(f"http://{http_url}/v2/models/{XGBOOST_MODEL}/stats", timeout=10)
    stats = answer.raise_for_status().json()["model_stats"][0]["inference_stats"]
    return {stage: (int(stats[stage]["count"]), int(stats[stage]["ns"])) for stage in STAGES}


def timed(predict: Predict, rows: NDArray[np.float32], requests: int) -> list[float]:
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        predict(rows)
        seconds.append(time.perf_counter() - started)
    return seconds


def batch_rounds(
    paths: dict[str, Predict],
    batch: NDArray[np.float32],
    settings: Settings,
    stats: Callable[[], Stats],
    triton_paths: set[str],
) -> dict[str, BatchFigure]:
    """Seconds per batch request of each path: the median of rounds that visit every path."""
    rounds: dict[str, list[float]] = {name: [] for name in paths}
    spent = {name: dict.fromkeys(STAGES, (0, 0)) for name in triton_paths}
    for predict in paths.values():
        timed(predict, batch, WARMUP_REQUESTS)
    for _ in range(settings.rounds):
        for name, predict in paths.items():
            before = stats() if name in triton_paths else {}
            requests, began = 0, time.perf_counter()
            while requests < 2 or time.perf_counter() - began < settings.round_seconds:
                predict(batch)
                requests += 1
            rounds[name].append((time.perf_counter() - began) / requests)
            if name in triton_paths:
                after = stats()
                for stage in STAGES:
                    count, ns = spent[name][stage]
                    spent[name][stage] = (
                        count + after[stage][0] - before[stage][0],
                        ns + after[stage][1] - before[stage][1],
                    )
    return {
        name: BatchFigure(
            statistics.median(seconds),
            {s: ns / count / 1e6 for s, (count, ns) in spent[name].items()}
            if name in triton_paths
            else None,
        )
        for name, seconds in rounds.items()
    }


def latency_ms(predict: Predict, single: NDArray[np.float32], requests: int) -> tuple[float, float]:
    timed(predict, single, WARMUP_REQUESTS)
    p50, p99 = np.percentile(np.array(timed(predict, single, requests)) * 1000, [50, 99])
    return float(p50), float(p99)


def concurrent_rps(
    predict: Predict, single: NDArray[np.float32], seconds: float
) -> tuple[float, int]:
    """Successful requests/s of 16 threads sending single rows back to back; and failures."""
    counts = [0] * CONCURRENT_CLIENTS
    errors = [0] * CONCURRENT_CLIENTS
    start = threading.Barrier(CONCURRENT_CLIENTS + 1)
    deadline = 0.0

    def client(index: int) -> None:
        start.wait()
        while time.perf_counter() < deadline:
            try:
                predict(single)
                counts[index] += 1
            except Exception:  # any failed request counts, whatever the client raised
                errors[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CONCURRENT_CLIENTS)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began), sum(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter runs")
    parser.add_argument(
        "--model",
        choices=("fleet", "small"),
        default="fleet",
        help="the demo-shaped fleet model (default) or the training tests' 7-tree model",
    )
    args = parser.parse_args()
    settings = (
        Settings(sequential=200, rounds=5, round_seconds=0.15, concurrent_seconds=3.0)
        if args.quick
        else Settings(sequential=1_000, rounds=11, round_seconds=0.4, concurrent_seconds=10.0)
    )
    latencies: dict[str, tuple[float, float]] = {}
    batches: dict[str, BatchFigure] = {}
    concurrent: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stack_path = Path(tmp) / "stack"
        stack_path.mkdir()
        peers: list[ServerProcess] = []
        clients: list[InferenceClient] = []
        try:
            tracking_uri = start_local_mlflow(stack_path).url
            began = time.perf_counter()
            rows = registered_rows(tracking_uri, Path(tmp), args.model)
            print(f"trained and registered in {time.perf_counter() - began:.0f} s")
            served = start_serving(stack_path, tracking_uri)
            versions = {model.name: model.version for model in served.repository.models}
            if XGBOOST_MODEL not in versions:
                raise SystemExit(f"{XGBOOST_MODEL} holds no alias: {sorted(versions)}")
            model_uri = f"models:/{XGBOOST_MODEL}/{versions[XGBOOST_MODEL]}"
            mlflow.set_tracking_uri(tracking_uri)
            booster = mlflow.xgboost.load_model(model_uri)
            if not isinstance(booster, xgb.Booster):
                raise SystemExit(f"{model_uri} is not an XGBoost booster")
            booster.set_param({"nthread": XGBOOST_THREADS})
            logs = stack_path / "logs"
            peers = [start_mlflow_serve(model_uri, tracking_uri, logs, w) for w in (1, 2)]

            rows = np.ascontiguousarray(rows, dtype=np.float32)
            single = rows[:1]
            batch = np.ascontiguousarray(np.resize(rows, (BATCH, rows.shape[1])))
            router = served.router.url.removeprefix("http://")
            triton_http = f"127.0.0.1:{served.triton_ports.http}"
            grpc = InferenceClient(f"127.0.0.1:{served.router_grpc_port}", "grpc", 60)
            http = InferenceClient(router, "http", 60)
            direct_grpc = InferenceClient(f"127.0.0.1:{served.triton_ports.grpc}", "grpc", 60)
            direct_http = InferenceClient(triton_http, "http", 60)
            clients = [grpc, http, direct_grpc, direct_http]
            expected = booster.inplace_predict(batch)
            key = champion_key(router)
            routed = {"gRPC": triton_predict(grpc), "HTTP": triton_predict(http, AB_MODEL, key)}
            for name, predict in routed.items():
                answer = np.asarray(predict(batch))
                if not np.allclose(answer, expected, atol=1e-5):
                    raise SystemExit(f"Triton over {name} answers differently from in-process")
            shape = f"{rows.shape[1]} features, {booster.num_boosted_rounds()} trees"
            print(f"{XGBOOST_MODEL} v{versions[XGBOOST_MODEL]}: {shape};")
            print("Triton's answers match in-process inplace_predict over gRPC and HTTP")

            names = served.repository.feature_names
            formats = {len(r): format_timings(peers[0].url, r, names) for r in (single, batch)}
            for size, timings in formats.items():
                described = ", ".join(f"{name} {ms:.1f} ms" for name, ms in timings.items())
                print(f"{PEER} at batch {size:,}, median per request format: {described}")
            best = {size: next(iter(timings)) for size, timings in formats.items()}
            peer, peer_two_workers = (mlflow_serve_predict(p.url, names, best) for p in peers)
            ours, ours_http = routed["gRPC"], routed["HTTP"]

            sequential = {IN_PROCESS: booster.inplace_predict, PEER: peer, OURS: ours}
            for name, predict in (sequential | {OURS_HTTP: ours_http}).items():
                latencies[name] = latency_ms(predict, single, settings.sequential)
            hops = {
                DIRECT_HTTP: triton_predict(direct_http),
                DIRECT_JSON: json_tensor_predict(triton_http),
                DIRECT_GRPC: triton_predict(direct_grpc),
                OURS_HTTP: ours_http,
            }
            batches = batch_rounds(
                sequential | hops,
                batch,
                settings,
                lambda: triton_stats(triton_http),
                {OURS, *hops},
            )
            for name, predict in (
                sequential | {PEER_TWO_WORKERS: peer_two_workers, OURS_HTTP: ours_http}
            ).items():
                concurrent[name] = concurrent_rps(predict, single, settings.concurrent_seconds)
        finally:
            for client in clients:
                client.close()
            for server in peers:
                server.stop()
            stop_stack(stack_path)

    print(
        f"batch 1: {settings.sequential} sequential requests; batch {BATCH:,}: median of "
        f"{settings.rounds} rounds of {settings.round_seconds:.2f} s per path; "
        f"{CONCURRENT_CLIENTS} concurrent single-row clients for "
        f"{settings.concurrent_seconds:.0f} s"
    )
    print(
        f"{'':28} {'b1 p50 ms':>10} {'b1 p99 ms':>10} {'b1024 rows/s':>13} "
        f"{'16 clients req/s':>17} {'errors':>7}"
    )
    for name in (IN_PROCESS, PEER, PEER_TWO_WORKERS, OURS, OURS_HTTP):
        p50, p99 = (f"{v:10.2f}" for v in latencies[name]) if name in latencies else ["-"] * 2
        rate = f"{batches[name].rows_per_s:13,.0f}" if name in batches else "-"
        rps, errors = concurrent[name]
        print(f"{name:28} {p50:>10} {p99:>10} {rate:>13} {rps:17,.0f} {errors:7d}")

    print(f"batch {BATCH:,}, where the time goes: ms per request; Triton's own split")
    print(
        f"{'':28} {'ms':>7} {'rows/s':>11} {'queue':>7} {'input':>7} {'infer':>7} "
        f"{'output':>7} {'Triton':>7}"
    )
    for name in (IN_PROCESS, DIRECT_HTTP, DIRECT_JSON, DIRECT_GRPC, OURS_HTTP, OURS, PEER):
        figure = batches[name]
        split = (
            " ".join(f"{figure.triton_ms[stage]:7.3f}" for stage in STAGES)
            if figure.triton_ms
            else ""
        )
        print(f"{name:28} {figure.seconds * 1000:7.3f} {figure.rows_per_s:11,.0f} {split}")

    ours_figure, limit = batches[OURS], batches[IN_PROCESS]
    peer_rps = max(concurrent[PEER][0], concurrent[PEER_TWO_WORKERS][0])
    throughput = ours_figure.rows_per_s / batches[PEER].rows_per_s
    print(f"serving_throughput_vs_mlflow_serve: {throughput:.2f}")
    print(f"serving_efficiency_vs_inprocess: {ours_figure.rows_per_s / limit.rows_per_s:.3f}")
    print(f"serving_concurrent_rps_vs_mlflow_serve: {concurrent[OURS][0] / peer_rps:.2f}")
    print(f"serving_p99_ratio_vs_mlflow_serve: {latencies[OURS][1] / latencies[PEER][1]:.3f}")


if __name__ == "__main__":
    main()
