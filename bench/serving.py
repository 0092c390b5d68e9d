"""Benchmark: one registered XGBoost model served three ways on this machine.

Run: ``.venv/bin/python bench/serving.py [--quick]``. A small fleet (the training tests'
synthetic one) is trained with ``training.pipeline.run_training`` and registered in a local
MLflow; then the same XGBoost model version is served

- in process: ``Booster.inplace_predict`` on the numpy rows (the limit, no network);
- by ``mlflow models serve --env-manager local`` with its default single worker (the peer a
  user would reach for; here ``-w 2`` made it ~10x slower at batch 1, 50 ms instead of 5 ms);
  the client posts ``dataframe_split`` JSON encoded once up front, so the peer's figures
  leave out the client's encoding;
- by Triton behind the NGINX A/B router (ours, ``vigil.local_stack.start_serving``), called by
  model name through the router with ``serving.inference.InferenceClient`` (the scorer's
  client), over gRPC and over HTTP with binary tensors.

XGBoost runs on one thread everywhere, as in Triton's model instances: on this machine's two
shared cores, OpenMP with more threads takes ~25 ms for a single row instead of ~0.4 ms.

Each is measured at batch 1 (p50/p99 over sequential requests: 1,000, or 200 with
``--quick``), at batch 1,024 (rows/s over sequential requests) and with 16 concurrent
single-row clients (requests/s). The machine's cores are shared by the clients and the
servers. Triton's answers are checked against the in-process probabilities first. Every
server is stopped at the end. Prints a table and, last, the ratios of ours (gRPC):
``serving_throughput_vs_mlflow_serve`` (batch 1,024, target >= 10),
``serving_efficiency_vs_inprocess`` (batch 1,024, target >= 0.5),
``serving_concurrent_rps_vs_mlflow_serve`` (target >= 3) and
``serving_p99_ratio_vs_mlflow_serve`` (batch 1, target <= 0.7).
"""

import sys
from pathlib import Path

# This file is named like the package it measures: put the repository root in the place of
# its folder on the import path (which also makes the training tests' fleet importable).
sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import httpx  # noqa: E402
import mlflow.xgboost  # noqa: E402
import numpy as np  # noqa: E402
import xgboost as xgb  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

from contracts.features import feature_columns  # noqa: E402
from contracts.serving import XGBOOST_MODEL  # noqa: E402
from serving.inference import InferenceClient  # noqa: E402
from tests.training.conftest import METRICS, small_config, write_fleet_store  # noqa: E402
from training.pipeline import run_training  # noqa: E402
from training.registry import RunDirectory, load_holdout  # noqa: E402
from vigil.local_stack import start_local_mlflow, start_serving  # noqa: E402
from vigil.processes import ServerProcess, free_port, start_server, venv_tool  # noqa: E402
from vigil.stack import stop_stack  # noqa: E402

BATCH = 1_024
CONCURRENT_CLIENTS = 16
WARMUP_REQUESTS = 20
NO_GATES = {"min_f1": 0.0, "min_precision": 0.0}
XGBOOST_THREADS = 1  # as in each Triton model instance (serving.triton's default threads)

Predict = Callable[[NDArray[np.float32]], object]


@dataclass(frozen=True)
class Figures:
    p50_ms: float
    p99_ms: float
    batch_rows_per_s: float
    concurrent_rps: float
    concurrent_errors: int


@dataclass(frozen=True)
class Settings:
    sequential: int
    batch_requests: int
    concurrent_seconds: float


def registered_rows(tracking_uri: str, root: Path) -> NDArray[np.float32]:
    """Train and register both models on the small fleet; the run's holdout rows."""
    store = write_fleet_store(root / "fleet")
    run_path = root / "run"
    summary = run_training(store, small_config(gates=NO_GATES), tracking_uri, run_path, None)
    if summary.registration is None:
        raise SystemExit(f"registration failed: {summary.registration_error}")
    rows, _ = load_holdout(RunDirectory(run_path), feature_columns(METRICS))
    return rows


def start_mlflow_serve(model_uri: str, tracking_uri: str, log_dir: Path) -> ServerProcess:
    port = free_port()
    bin_dir = str(Path(venv_tool("mlflow")).parent)
    argv = [
        "env",
        f"PATH={bin_dir}:/usr/bin:/bin",  # mlflow serve runs its server by name (LOCAL.md)
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
    ]
    return start_server("mlflow-serve", argv, f"http://127.0.0.1:{port}", "/ping", log_dir, 180)


def mlflow_serve_predict(url: str, names: list[str]) -> Predict:
    """A caller of /invocations; bodies are encoded once per distinct array."""
    client = httpx.Client(
        base_url=url, timeout=60, limits=httpx.Limits(max_connections=CONCURRENT_CLIENTS)
    )
    bodies: dict[int, bytes] = {}

    def predict(rows: NDArray[np.float32]) -> object:
        body = bodies.get(id(rows))
        if body is None:
            payload = {"dataframe_split": {"columns": names, "data": rows.tolist()}}
            body = bodies[id(rows)] = json.dumps(payload).encode()
        response = client.post(
            "/invocations", content=body, headers={"Content-Type": "application/json"}
        )
        response.raise_for_status()
        return response.content

    return predict


def measure(
    predict: Predict, single: NDArray[np.float32], batch: NDArray[np.float32], settings: Settings
) -> Figures:
    for _ in range(WARMUP_REQUESTS):
        predict(single)
        predict(batch)
    latencies = []
    for _ in range(settings.sequential):
        started = time.perf_counter()
        predict(single)
        latencies.append(time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(settings.batch_requests):
        predict(batch)
    batch_seconds = time.perf_counter() - started
    rps, errors = concurrent_rps(predict, single, settings.concurrent_seconds)
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    return Figures(
        p50_ms=float(p50),
        p99_ms=float(p99),
        batch_rows_per_s=settings.batch_requests * len(batch) / batch_seconds,
        concurrent_rps=rps,
        concurrent_errors=errors,
    )


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


def triton_predict(client: InferenceClient) -> Predict:
    def predict(rows: NDArray[np.float32]) -> object:
        return client.infer(XGBOOST_MODEL, rows, "bench").probabilities

    return predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests, shorter runs")
    args = parser.parse_args()
    settings = (
        Settings(sequential=200, batch_requests=10, concurrent_seconds=3.0)
        if args.quick
        else Settings(sequential=1_000, batch_requests=50, concurrent_seconds=10.0)
    )
    results: dict[str, Figures] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stack_path = Path(tmp) / "stack"
        stack_path.mkdir()
        mlflow_serve: ServerProcess | None = None
        clients: list[InferenceClient] = []
        try:
            tracking_uri = start_local_mlflow(stack_path).url
            began = time.perf_counter()
            rows = registered_rows(tracking_uri, Path(tmp))
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
            mlflow_serve = start_mlflow_serve(model_uri, tracking_uri, stack_path / "logs")

            rows = np.ascontiguousarray(rows, dtype=np.float32)
            single = rows[:1]
            batch = np.ascontiguousarray(np.resize(rows, (BATCH, rows.shape[1])))
            router = served.router.url.removeprefix("http://")
            grpc = InferenceClient(f"127.0.0.1:{served.router_grpc_port}", "grpc", 60)
            http = InferenceClient(router, "http", 60)
            clients = [grpc, http]
            expected = booster.inplace_predict(batch)
            for name, client in (("gRPC", grpc), ("HTTP", http)):
                answer = client.infer(XGBOOST_MODEL, batch, "bench").probabilities
                if not np.allclose(answer, expected, atol=1e-5):
                    raise SystemExit(f"Triton over {name} answers differently from in-process")
            print(f"{XGBOOST_MODEL} v{versions[XGBOOST_MODEL]}: {rows.shape[1]} features;")
            print("Triton's answers match in-process inplace_predict over gRPC and HTTP")

            paths: dict[str, Predict] = {
                "in-process inplace_predict": booster.inplace_predict,
                "mlflow models serve": mlflow_serve_predict(
                    mlflow_serve.url, served.repository.feature_names
                ),
                "nginx -> Triton (gRPC)": triton_predict(grpc),
                "nginx -> Triton (HTTP)": triton_predict(http),
            }
            for name, predict in paths.items():
                results[name] = measure(predict, single, batch, settings)
        finally:
            for client in clients:
                client.close()
            if mlflow_serve is not None:
                mlflow_serve.stop()
            stop_stack(stack_path)

    print(
        f"batch 1: {settings.sequential} sequential requests; batch {BATCH:,}: "
        f"{settings.batch_requests} requests; {CONCURRENT_CLIENTS} concurrent single-row "
        f"clients for {settings.concurrent_seconds:.0f} s"
    )
    print(
        f"{'':28} {'b1 p50 ms':>10} {'b1 p99 ms':>10} {'b1024 rows/s':>13} "
        f"{'16 clients req/s':>17} {'errors':>7}"
    )
    for name, f in results.items():
        print(
            f"{name:28} {f.p50_ms:10.2f} {f.p99_ms:10.2f} {f.batch_rows_per_s:13,.0f} "
            f"{f.concurrent_rps:17,.0f} {f.concurrent_errors:7d}"
        )
    ours = results["nginx -> Triton (gRPC)"]
    peer = results["mlflow models serve"]
    limit = results["in-process inplace_predict"]
    print(
        f"serving_throughput_vs_mlflow_serve: {ours.batch_rows_per_s / peer.batch_rows_per_s:.2f}"
    )
    print(f"serving_efficiency_vs_inprocess: {ours.batch_rows_per_s / limit.batch_rows_per_s:.3f}")
    print(
        f"serving_concurrent_rps_vs_mlflow_serve: {ours.concurrent_rps / peer.concurrent_rps:.2f}"
    )
    print(f"serving_p99_ratio_vs_mlflow_serve: {ours.p99_ms / peer.p99_ms:.3f}")


if __name__ == "__main__":
    main()
