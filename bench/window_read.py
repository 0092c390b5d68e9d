"""The online scorer's window read: a feature file cut into row groups of whole hours, or not.

Run: ``.venv/bin/python -m bench.window_read [--instances N]``. A simulated fleet (default the
demo's 50 instances; 2 days, so that the second day's features have their history) is turned
into features twice, from the same raw store: once with the feature job's row groups of whole
hours (``telemetry.feature_job.ROW_GROUP_ROWS``, ours) and once with one row group per batch of
instances (the layout before, where every row group spans the whole day). Then the scorer's
``read_window_features`` reads the same 24 five-minute windows of the second day from each,
the rows are checked equal, and the last line is ``window_read_speedup_vs_day_row_groups: X``
(the median read time of the old layout / ours), beside the file sizes.
"""

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from polars.testing import assert_frame_equal

from contracts.dataset import read_dataset_info
from contracts.features import feature_columns
from contracts.layout import features_path
from contracts.store import ObjectStore
from serving.scorer.window_features import read_window_features
from telemetry import feature_job
from telemetry.simulator.config import SimulationConfig
from telemetry.simulator.simulation import write_simulation

WINDOW = timedelta(minutes=5)
WINDOWS = 24
STRIDE = timedelta(minutes=55)  # the windows visit every hour of the day


def build(store: ObjectStore, row_group_rows: int) -> None:
    feature_job.ROW_GROUP_ROWS = row_group_rows
    feature_job.build_features(store)


def median_read_ms(store: ObjectStore, day: datetime, names: list[str]) -> float:
    seconds = []
    for index in range(WINDOWS):
        start = day + index * STRIDE
        began = time.perf_counter()
        read_window_features(store, start, start + WINDOW, names)
        seconds.append(time.perf_counter() - began)
    return statistics.median(seconds) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=50)
    args = parser.parse_args()
    ours_rows = feature_job.ROW_GROUP_ROWS
    config = SimulationConfig(instances=args.instances, duration=timedelta(days=2))
    day = config.start + timedelta(days=1)
    stores: dict[str, ObjectStore] = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_simulation(ObjectStore.from_uri(f"{tmp}/ours"), config)
        shutil.copytree(f"{tmp}/ours", f"{tmp}/day")
        stores = {
            "ours": ObjectStore.from_uri(f"{tmp}/ours"),
            "day row groups": ObjectStore.from_uri(f"{tmp}/day"),
        }
        build(stores["ours"], ours_rows)
        build(stores["day row groups"], 10**12)
        names = feature_columns(read_dataset_info(stores["ours"]).metrics)
        for start in (day + timedelta(hours=1), day + timedelta(hours=17, minutes=35)):
            ours, before = (
                read_window_features(store, start, start + WINDOW, names)
                for store in stores.values()
            )
            assert ours.height > 0
            assert_frame_equal(ours, before)
        key = features_path(day.date())
        layouts = {
            name: f"{store.parquet_file(key).metadata.num_row_groups:3} row groups, "
            f"{Path(store.path(key)).stat().st_size / 1e6:6.1f} MB"
            for name, store in stores.items()
        }
        timings = {name: median_read_ms(store, day, names) for name, store in stores.items()}
    rows = args.instances * 1_440
    print(f"{args.instances} instances, one day: {rows:,} rows, {len(names)} features")
    for name, ms in timings.items():
        print(f"{name:15} {layouts[name]}   median 5-minute window read {ms:7.1f} ms")
    speedup = timings["day row groups"] / timings["ours"]
    print(f"window_read_speedup_vs_day_row_groups: {speedup:.2f}")


if __name__ == "__main__":
    main()
