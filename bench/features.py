"""Feature throughput and memory: contracts.features against a plain pandas implementation.

Run: ``.venv/bin/python -m bench.features``. One synthetic day of a 1,500-instance fleet at
1-minute steps (2.16 M instance-minutes; 6 metrics plus log counts, with a few gaps) is made
with numpy from a fixed seed. Each implementation turns the same wide frame (one row per
instance-minute, as ``contracts.features.to_wide`` returns it) into features in its own child
process, which reports its wall time and its peak RSS growth
(``ru_maxrss`` after the run minus the RSS before it: polars allocates in Rust, where
tracemalloc cannot see). The parent checks that both give the same values on every shared
column and prints, last, ``features_speedup_vs_pandas: X`` (ours / pandas throughput).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import psutil

from contracts.features import (
    COUNTER_METRICS,
    LAGS,
    LOG_COUNT_COLUMNS,
    LOG_TEMPLATE_COLUMNS,
    SUM_WINDOW,
    SUMMED_LOG_COUNTS,
    WINDOWS,
    ZSCORE_EPS,
    compute_features,
    metric_slug,
)
from contracts.telemetry import FLEET_METRICS

INSTANCES = 1_500
STEPS = 1_440
METRICS = FLEET_METRICS[:6]  # CPU, memory, network in/out, disk read/write ops
DAY_START = np.datetime64("2026-01-05T00:00:00", "ms")  # a Monday
GAP_RATE = 0.001
SEED = 7


def synthetic_wide() -> pd.DataFrame:
    """One wide row per (instance, minute): metrics with daily cycles, noise and gaps."""
    rng = np.random.default_rng(SEED)
    n = INSTANCES * STEPS
    minute = np.tile(np.arange(STEPS), INSTANCES)
    daily = np.sin(2 * np.pi * minute / STEPS)
    base = np.repeat(rng.uniform(0.5, 1.5, INSTANCES), STEPS)
    columns = {
        "CPUUtilization": np.clip(40 * base + 15 * daily + rng.normal(0, 5, n), 0, 100),
        "MemoryUtilization": np.clip(55 * base + 5 * daily + rng.normal(0, 2, n), 0, 100),
        "NetworkIn": base * rng.lognormal(13.5, 0.4, n),
        "NetworkOut": base * rng.lognormal(13.0, 0.4, n),
        "DiskReadOps": rng.poisson(80 * base).astype(np.float64),
        "DiskWriteOps": rng.poisson(120 * base).astype(np.float64),
    }
    for values in columns.values():
        values[rng.random(n) < GAP_RATE] = np.nan
    errors = rng.poisson(0.05, n)
    warnings = rng.poisson(0.2, n)
    criticals = rng.poisson(0.01, n)
    return pd.DataFrame(
        {
            "instance_id": np.repeat([f"i-{i:05d}" for i in range(INSTANCES)], STEPS),
            "timestamp": pd.to_datetime(DAY_START + minute.astype("timedelta64[m]"), utc=True),
            **columns,
            "error_count": errors,
            "warning_count": warnings,
            "critical_count": criticals,
            "log_count": errors + warnings + criticals + rng.poisson(3.0, n),
            "parse_error_count": rng.poisson(0.01, n),
        }
    )


def pandas_features(df: pd.DataFrame) -> pd.DataFrame:
    """The same features written the way a data scientist would: groupby + rolling."""
    df = df.sort_values(["instance_id", "timestamp"]).reset_index(drop=True)
    hour, dow = df["timestamp"].dt.hour, df["timestamp"].dt.dayofweek
    out = {
        "instance_id": df["instance_id"],
        "timestamp": df["timestamp"],
        "hour_of_day": hour,
        "day_of_week": dow,
        "is_weekend": (dow >= 5).astype(int),
        "is_business_hours": ((dow < 5) & hour.between(9, 17)).astype(int),
    }
    groups = df.groupby("instance_id", sort=False)
    filled = groups[list(METRICS)].ffill().fillna(0.0)
    for metric in METRICS:
        s = metric_slug(metric)
        x = filled[metric]
        by_instance = x.groupby(df["instance_id"], sort=False)
        out[s] = x
        for w in WINDOWS:
            rolling = by_instance.rolling(w, min_periods=1)
            out[f"{s}_mean_{w}"] = rolling.mean().droplevel(0)
            out[f"{s}_std_{w}"] = rolling.std().droplevel(0).fillna(0.0)
            out[f"{s}_min_{w}"] = rolling.min().droplevel(0)
            out[f"{s}_max_{w}"] = rolling.max().droplevel(0)
        first = by_instance.transform("first")
        for k in LAGS:
            lag = by_instance.shift(k).fillna(first)
            out[f"{s}_lag_{k}"] = lag
            out[f"{s}_change_{k}"] = (x - lag) / k
        out[f"{s}_zscore_60"] = (x - out[f"{s}_mean_60"]) / (out[f"{s}_std_60"] + ZSCORE_EPS)
        if metric in COUNTER_METRICS:
            out[f"{s}_sum_{SUM_WINDOW}"] = by_instance.rolling(SUM_WINDOW, 1).sum().droplevel(0)
    for column in LOG_COUNT_COLUMNS:
        out[column] = df[column]
    for column in SUMMED_LOG_COUNTS:
        summed = groups[column].rolling(SUM_WINDOW, min_periods=1).sum().droplevel(0)
        out[f"{column}_sum_{SUM_WINDOW}"] = summed
    problems = out[f"error_count_sum_{SUM_WINDOW}"] + out[f"critical_count_sum_{SUM_WINDOW}"]
    out[f"error_ratio_{SUM_WINDOW}"] = problems / out[f"log_count_sum_{SUM_WINDOW}"].clip(lower=1)
    return pd.DataFrame(out)


def run_one(implementation: str, out_dir: Path) -> None:
    """Child process: time one implementation and write its output and figures."""
    if implementation == "vigil":
        polars_wide = pl.from_pandas(synthetic_wide())
        rss_before = psutil.Process().memory_info().rss
        start = time.perf_counter()
        features = compute_features(polars_wide, METRICS)
        seconds = time.perf_counter() - start
    else:
        pandas_wide = synthetic_wide()
        rss_before = psutil.Process().memory_info().rss
        start = time.perf_counter()
        pandas_out = pandas_features(pandas_wide)
        seconds = time.perf_counter() - start
        features = pl.from_pandas(pandas_out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    features.write_ipc(out_dir / f"{implementation}.arrow")
    figures = {"seconds": seconds, "rows": features.height, "columns": features.width}
    figures["peak_rss_growth_bytes"] = peak - rss_before
    (out_dir / f"{implementation}.json").write_text(json.dumps(figures))


def compare(out_dir: Path) -> list[str]:
    """Feature columns on which the two outputs differ beyond float32 rounding."""
    ours = pl.read_ipc(out_dir / "vigil.arrow")
    theirs = pl.read_ipc(out_dir / "pandas.arrow")
    # The pandas baseline has no template miner: the log-template columns are ours alone (all
    # zero here, the synthetic day has no templates); every other column must be in both.
    unexpected = (set(ours.columns) - set(LOG_TEMPLATE_COLUMNS)) ^ set(theirs.columns)
    if unexpected:
        raise SystemExit(f"column sets differ: {sorted(unexpected)}")
    if not ours.select("instance_id", "timestamp").equals(
        theirs.select("instance_id", "timestamp")
    ):
        raise SystemExit("the implementations return different rows")
    return [
        column
        for column in theirs.columns[2:]
        if not np.allclose(
            ours[column].to_numpy().astype(np.float64),
            theirs[column].to_numpy().astype(np.float64),
            rtol=1e-5,
            atol=1e-6,
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", choices=["vigil", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run_one(args.run, args.out)
        return
    rows = INSTANCES * STEPS
    print(f"{INSTANCES} instances x {STEPS} steps = {rows:,} rows, {len(METRICS)} metrics + logs")
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(tmp)
        figures = {}
        for implementation in ("pandas", "vigil"):
            command = [
                sys.executable,
                "-m",
                "bench.features",
                "--run",
                implementation,
                "--out",
                tmp,
            ]
            subprocess.run(command, check=True)
            figures[implementation] = json.loads((out_dir / f"{implementation}.json").read_text())
            f = figures[implementation]
            print(
                f"{implementation:>6}: {f['seconds']:6.2f} s, "
                f"{rows / f['seconds']:>12,.0f} rows/s, "
                f"peak RSS growth {f['peak_rss_growth_bytes'] / 2**30:.2f} GiB, "
                f"{f['columns'] - 2} feature columns"
            )
        differing = compare(out_dir)
    if differing:
        raise SystemExit(f"outputs differ on {len(differing)} columns: {differing}")
    print(
        f"outputs agree on all {figures['pandas']['columns'] - 2} shared feature columns "
        f"(the {len(LOG_TEMPLATE_COLUMNS)} log-template columns are ours alone)"
    )
    speedup = figures["pandas"]["seconds"] / figures["vigil"]["seconds"]
    print(f"features_speedup_vs_pandas: {speedup:.2f}")


if __name__ == "__main__":
    main()
