"""Benchmark: locust load on the A/B endpoint (NGINX -> Triton), beside the seed's reference.

Run: ``.venv/bin/python -m bench.loadtest [--users 10] [--duration 60]``. Both models are
trained on a small fleet (the training tests' synthetic one) and registered in a local MLflow;
the local serving stack (``vigil.local_stack.start_serving``: Triton and the NGINX A/B router,
the way ``vigil up`` runs them) serves their champion and challenger. Then
``serving.loadtest.run.run_loadtest`` runs headless locust: ``--users`` clients sending
single-row requests back to back to ``/v2/models/anomaly/infer`` for ``--duration`` seconds,
each client coming back as a new one (new arm draw) every 20 requests. The load generator
shares this machine's cores with the servers. Every server is stopped at the end.

Prints requests/s, mean and p50/p95/p99 latency and failures, in total and per answering
model, beside the reference deployment (27.7 requests/s, 253 ms mean, 0 failures
at 10 users), and last ``loadtest_rps_vs_seed: X`` (our requests/s / 27.7).
"""

import argparse
import tempfile
import time
from pathlib import Path

from serving.loadtest.run import RequestStats, run_loadtest
from tests.training.conftest import small_config, write_fleet_store
from training.pipeline import run_training
from vigil.local_stack import start_local_mlflow, start_serving
from vigil.stack import stop_stack

SEED_USERS = 10
SEED_RPS = 27.7
SEED_MEAN_MS = 253.0
SEED_FAILURES = 0
NO_GATES = {"min_f1": 0.0, "min_precision": 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=SEED_USERS, help="concurrent clients")
    parser.add_argument("--duration", type=int, default=60, help="seconds of load")
    args = parser.parse_args()
    if args.users < 1 or args.duration < 1:
        raise SystemExit("--users and --duration must be at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        stack_path = Path(tmp) / "stack"
        stack_path.mkdir()
        try:
            tracking_uri = start_local_mlflow(stack_path).url
            began = time.perf_counter()
            store = write_fleet_store(Path(tmp) / "fleet")
            config = small_config(gates=NO_GATES)
            summary = run_training(store, config, tracking_uri, Path(tmp) / "run", None)
            if summary.registration is None:
                raise SystemExit(f"registration failed: {summary.registration_error}")
            print(f"trained and registered in {time.perf_counter() - began:.0f} s")
            served = start_serving(stack_path, tracking_uri)
            arms = ", ".join(f"{m.alias}: {m.name} v{m.version}" for m in served.repository.models)
            print(f"serving {arms} behind {served.router.url}")
            result = run_loadtest(served.router.url, args.users, args.duration, Path(tmp) / "out")
        finally:
            stop_stack(stack_path)

    print(f"{result.users} users for {result.duration_s} s, single-row requests")
    print(
        f"{'':32} {'req/s':>7} {'mean ms':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'requests':>9} {'failures':>9}"
    )
    print(_row("all (ours)", result.total))
    for model, stats in sorted(result.arms.items()):
        print(_row(f"  answered by {model}", stats))
    seed = f"reference ({SEED_USERS} users)"
    print(f"{seed:32} {SEED_RPS:7.1f} {SEED_MEAN_MS:8.0f} {'':>7} {'':>7} {'':>7} {'':>9} ", end="")
    print(f"{SEED_FAILURES:9d}")
    print(f"success rate: {result.success_rate:.4f}")
    print(f"loadtest_rps_vs_seed: {result.total.requests_per_second / SEED_RPS:.2f}")


def _row(name: str, stats: RequestStats) -> str:
    return (
        f"{name:32} {stats.requests_per_second:7.1f} {stats.mean_ms:8.1f} "
        f"{_ms(stats.p50_ms)} {_ms(stats.p95_ms)} {_ms(stats.p99_ms)} "
        f"{stats.requests:9d} {stats.failures:9d}"
    )


def _ms(value: float | None) -> str:
    return f"{'-':>7}" if value is None else f"{value:7.0f}"


if __name__ == "__main__":
    main()
