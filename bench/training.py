"""Benchmark: the training pipeline against a bare ``xgboost.train`` on the same matrix.

Run: ``.venv/bin/python -m bench.training [--rows N] [--features F] [--engine local|dask]``.
A synthetic fleet (1,000 instances; default 1 M rows x 300 float32 features, as in issue 3)
is made with numpy from a fixed seed: standard-normal features, and incidents covering about
5 % of the rows during which 30 of the features shift. Every row has a true label; the
pipeline starts, as the reference deployment did, from 1.2 % of them.

Each side runs in its own child process that builds the same matrix, then reports its wall
time and its peak RSS growth (``ru_maxrss`` after minus RSS before):

- pipeline: ``training.pipeline.train_and_write`` with the default config: Isolation Forest
  over all training rows, review queue answered by the simulated reviewer, pseudo-labels,
  XGBoost with early stopping, CatBoost, evaluation against true labels, plots, report and
  run directory (registration excluded);
- bare: ``xgboost.DMatrix`` + ``xgboost.train`` with the same parameters and rounds on the
  whole matrix and its true labels.

Prints the pipeline's stages, both times and memory, and last
``training_overhead_vs_bare_xgboost: X`` (pipeline seconds / bare seconds).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import psutil
import xgboost as xgb

from training.config import TrainingConfig
from training.dask_cluster import dask_client
from training.data import TRUE_LABEL, TrainingData
from training.models import xgboost_params
from training.pipeline import train_and_write
from training.review_queue import REVIEWS_SCHEMA, row_id_expr

INSTANCES = 1_000
SHIFTED_FEATURES = 30
INCIDENT_RATE = 0.05
INCIDENT_MINUTES = 20
SEED = 11


def synthetic_data(rows: int, features: int) -> TrainingData:
    """Feature rows of a fleet with labelled incidents, built in memory."""
    rng = np.random.default_rng(SEED)
    minutes = rows // INSTANCES
    matrix = rng.standard_normal((INSTANCES * minutes, features), dtype=np.float32)
    labels = np.zeros(INSTANCES * minutes, dtype=np.int8)
    incidents = int(INCIDENT_RATE * len(labels) / INCIDENT_MINUTES)
    for instance, start in zip(
        rng.integers(0, INSTANCES, incidents),
        rng.integers(0, minutes - INCIDENT_MINUTES, incidents),
        strict=True,
    ):
        labels[instance * minutes + start : instance * minutes + start + INCIDENT_MINUTES] = 1
    shifted = rng.choice(features, SHIFTED_FEATURES, replace=False)
    anomalous = np.flatnonzero(labels)
    matrix[np.ix_(anomalous, shifted)] += rng.normal(2.5, 0.5, SHIFTED_FEATURES).astype(np.float32)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    ids = pl.DataFrame(
        {
            "instance_id": np.repeat([f"i-{i:05d}" for i in range(INSTANCES)], minutes),
            "timestamp": np.tile(
                np.datetime64(start.replace(tzinfo=None), "ms")
                + np.arange(minutes).astype("timedelta64[m]"),
                INSTANCES,
            ),
        }
    ).with_columns(pl.col("timestamp").dt.replace_time_zone("UTC"))
    frame = ids.with_columns(row_id_expr().alias("row_id"), pl.Series(TRUE_LABEL, labels))
    names = [f"feature_{j:03d}" for j in range(features)]
    return TrainingData(frame, matrix, names, "synthetic", metrics=[])  # no metric owns them


def run_pipeline(data: TrainingData, engine: str, out: Path) -> dict[str, object]:
    # The synthetic rows carry their true labels: the simulated reviewer answers the queue.
    config = TrainingConfig.model_validate(
        {"engine": engine, "review": {"simulate_reviewer": True}}
    )
    reviews = pl.DataFrame(REVIEWS_SCHEMA.empty_table())
    if engine == "dask":
        with dask_client(config.dask) as client:
            summary, _ = train_and_write(data, config, reviews, out / "run", client)
    else:
        summary, _ = train_and_write(data, config, reviews, out / "run")
    return {
        "stages": summary.stage_seconds,
        "f1": {kind: e.metrics.f1 for kind, e in summary.evaluations.items()},
        "isolation_forest_f1": summary.isolation_forest.f1,
        "trees": {kind: e.iterations for kind, e in summary.evaluations.items()},
        "trained_rows": {kind: e.trained_rows for kind, e in summary.evaluations.items()},
        "label_budget": summary.label_budget.model_dump(),
    }


def run_bare(data: TrainingData) -> dict[str, object]:
    config = TrainingConfig().xgboost
    labels = data.rows[TRUE_LABEL].to_numpy()
    dtrain = xgb.DMatrix(data.features, labels, feature_names=data.feature_names)
    booster = xgb.train(xgboost_params(config), dtrain, num_boost_round=config.n_estimators)
    return {"trees": booster.num_boosted_rounds()}


def child(side: str, rows: int, features: int, engine: str, out: Path) -> None:
    """Child process: build the data, run one side, write its figures."""
    data = synthetic_data(rows, features)
    rss_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    figures = run_pipeline(data, engine, out) if side == "pipeline" else run_bare(data)
    figures["seconds"] = time.perf_counter() - started
    figures["peak_rss_growth_bytes"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before
    )
    figures["rss_before_bytes"] = rss_before
    (out / f"{side}.json").write_text(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=300)
    parser.add_argument("--engine", choices=["local", "dask"], default="local")
    parser.add_argument("--side", choices=["pipeline", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rows < INSTANCES * 2 * INCIDENT_MINUTES:
        parser.error(
            f"--rows must be at least {INSTANCES * 2 * INCIDENT_MINUTES:,} ({INSTANCES:,} "
            f"instances with room for a {INCIDENT_MINUTES}-minute incident each)"
        )
    if args.side:
        child(args.side, args.rows, args.features, args.engine, args.out)
        return
    rows = args.rows // INSTANCES * INSTANCES
    print(f"{rows:,} rows x {args.features} features, engine {args.engine}")
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        for side in ("bare", "pipeline"):
            command = [
                sys.executable,
                "-m",
                "bench.training",
                *("--rows", str(args.rows), "--features", str(args.features)),
                *("--engine", args.engine, "--side", side, "--out", tmp),
            ]
            subprocess.run(command, check=True)
            figures[side] = json.loads((Path(tmp) / f"{side}.json").read_text())
    pipeline, bare = figures["pipeline"], figures["bare"]
    for stage, seconds in pipeline["stages"].items():
        print(f"  {stage:<48} {seconds:8.1f} s")
    print(
        f"pipeline: test F1 {pipeline['f1']}, "
        f"isolation forest alone {pipeline['isolation_forest_f1']:.3f}"
    )
    print(f"pipeline: trees {pipeline['trees']}, trained rows {pipeline['trained_rows']}")
    print(f"pipeline: label budget {pipeline['label_budget']}")
    for side, f in (("bare xgboost", bare), ("pipeline", pipeline)):
        print(
            f"{side:>12}: {f['seconds']:7.1f} s, peak RSS growth "
            f"{f['peak_rss_growth_bytes'] / 2**30:.2f} GiB "
            f"(data in memory before: {f['rss_before_bytes'] / 2**30:.2f} GiB)"
        )
    print(f"training_overhead_vs_bare_xgboost: {pipeline['seconds'] / bare['seconds']:.2f}")


if __name__ == "__main__":
    main()
