"""The scorer's ``raw`` feature source and its periodic loop, against a real Triton, a real
nginx A/B router and a real MLflow.

The raw source must give the feature job's rows for the same window. The loop runs as in
production, in the scorer app's lifespan, with 3-second windows over a store whose feature
file grows between ticks; the test waits on the app's own /metrics (with a generous timeout,
never a timing assert) to know which window was scored. A poisoned window (a corrupt feature
file, rows of the wrong type) is retried a bounded number of times, then skipped, recorded
and counted; an unreachable endpoint or store is retried without ever skipping.
"""

import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from numpy.typing import NDArray
from polars.testing import assert_frame_equal

from contracts.dataset import DatasetInfo, write_dataset_info
from contracts.features import INSTANCE_ID, TIMESTAMP, TIMESTAMP_TYPE
from contracts.layout import features_path
from contracts.store import ObjectStore
from serving.router.nginx import RouterConfig
from serving.scorer.app import create_app
from serving.scorer.loop import (
    SKIPPED_PREFIX,
    failure_reason,
    replay,
    skipped_key,
    window_start_of,
)
from serving.scorer.prediction_log import predictions_key, read_window_predictions
from serving.scorer.scorer import Scorer, WindowNotScoredError
from serving.scorer.served_models import ServedModels, load_served_models
from serving.scorer.settings import ScorerSettings
from serving.scorer.window_features import read_window_features
from serving.triton.server import TritonPorts
from telemetry.feature_job import build_features
from tests.serving.conftest import SERVED_SCORE_ATOL, Predict, Registered
from tests.serving.scorer_helpers import offline_scorer, scrape, serve_in_thread
from tests.telemetry.test_feature_job import write_raw
from tests.training.conftest import METRICS, START, fleet_frames
from vigil.local_stack import start_router
from vigil.processes import ServerProcess, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]

RAW_WINDOW = timedelta(minutes=10)
# The fleet's first window (no history before it), one across midnight, one on the next day.
RAW_WINDOWS = [START, START + timedelta(minutes=235), START + timedelta(minutes=420)]
LOOP_SECONDS = 3
LOOP_WINDOW = timedelta(seconds=LOOP_SECONDS)
INSTANCES = 6
WAIT_SECONDS = 90  # for a tick to show on /metrics: generous, the cores are shared
MAX_ATTEMPTS = 3  # window_max_attempts of the loop tests

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def served(registered: Registered) -> ServedModels:
    return load_served_models(registered.tracking_uri)


def _fleet_raw() -> pl.DataFrame:
    """The training fleet as raw telemetry: a row per metric datapoint, one per log event."""
    wide, _ = fleet_frames()
    metrics = wide.unpivot(
        index=[INSTANCE_ID, TIMESTAMP], on=METRICS, variable_name="name", value_name="value"
    ).with_columns(kind=pl.lit("metric"), level=pl.lit(None, pl.String))

    def events(level: str, count: pl.Expr) -> pl.DataFrame:
        repeated = pl.lit(level).repeat_by(count.cast(pl.UInt32)).alias("level")
        return (
            wide.select(INSTANCE_ID, TIMESTAMP, repeated)
            .explode("level")
            .drop_nulls("level")
            .with_columns(kind=pl.lit("log"), name=pl.lit(None, pl.String), value=pl.lit(None))
        )

    info_count = pl.col("log_count") - pl.col("error_count")
    logs = [events("ERROR", pl.col("error_count")), events("INFO", info_count)]
    columns = [INSTANCE_ID, TIMESTAMP, "kind", "name", "value", "level"]
    return pl.concat([frame.select(columns) for frame in [metrics, *logs]]).with_columns(
        source=pl.lit("ec2"), parse_error=pl.lit(False)
    )


def _raw_store(root: Path) -> ObjectStore:
    store = ObjectStore.from_uri(str(root))
    write_dataset_info(store, DatasetInfo(name="synthetic", metrics=METRICS))
    write_raw(store, _fleet_raw())
    return store


def test_raw_windows_equal_the_feature_jobs_rows_and_are_scored(
    registered: Registered,
    served: ServedModels,
    triton: ServerProcess,
    triton_ports: TritonPorts,
    served_in_process: dict[str, Predict],
    tmp_path: Path,
) -> None:
    job_store = _raw_store(tmp_path / "with-features")
    build_features(job_store)
    raw_only = _raw_store(tmp_path / "raw-only")  # no feature file: only raw rows can score
    names = served.feature_names
    expected = []
    for start in RAW_WINDOWS:
        from_job = read_window_features(job_store, start, start + RAW_WINDOW, names)
        from_raw = read_window_features(raw_only, start, start + RAW_WINDOW, names, "raw")
        assert from_job.height == INSTANCES * 10
        assert_frame_equal(from_raw, from_job)
        expected.append(from_job)

    settings = ScorerSettings(
        window_seconds=int(RAW_WINDOW.total_seconds()),
        features_source="raw",
        inference_url=f"127.0.0.1:{triton_ports.grpc}",
        champion_weight=50,
    )
    scorer = Scorer(settings, raw_only, served)
    try:
        results = [scorer.score_once(start) for start in RAW_WINDOWS]
    finally:
        scorer.close()
    for result, rows in zip(results, expected, strict=True):
        predictions = result.predictions
        assert predictions.select(INSTANCE_ID, TIMESTAMP).equals(
            rows.select(INSTANCE_ID, TIMESTAMP)
        )
        assert predictions["error"].null_count() == predictions.height
        _assert_served_scores(predictions, rows, names, served_in_process)


def _assert_served_scores(
    predictions: pl.DataFrame,
    rows: pl.DataFrame,
    names: list[str],
    served_in_process: dict[str, Predict],
) -> None:
    scored = predictions.join(rows, on=[INSTANCE_ID, TIMESTAMP], maintain_order="left")
    for (model,), part in scored.group_by("model"):
        features = part.select(names).to_numpy().astype(np.float32)
        np.testing.assert_allclose(
            part["probability"].to_numpy(),
            served_in_process[str(model)](features),
            rtol=1e-5,
            atol=SERVED_SCORE_ATOL,
        )


class LiveFeatures:
    """Feature rows stamped into wall-clock windows and written as the feature job lays them
    out: one file per UTC day, rewritten whole (atomically) when a window's rows arrive."""

    def __init__(self, store: ObjectStore, names: list[str], source: NDArray[np.float32]):
        self.store = store
        self.names = names
        self.source = source
        self.written = pl.DataFrame()

    def add_window(self, start: datetime) -> None:
        stamps = [start + timedelta(seconds=s) for s in range(LOOP_SECONDS)]
        first = self.written.height
        rows = self.source[first : first + INSTANCES * len(stamps)]
        frame = pl.DataFrame(
            {
                INSTANCE_ID: [f"i-{i:04d}" for i in range(INSTANCES) for _ in stamps],
                TIMESTAMP: pl.Series(stamps * INSTANCES, dtype=TIMESTAMP_TYPE),
                **{name: rows[:, column] for column, name in enumerate(self.names)},
            }
        )
        self.written = pl.concat([self.written, frame])
        for (day,), part in self.written.group_by(pl.col(TIMESTAMP).dt.date()):
            self.store.write_table(features_path(day), part.to_arrow())

    def rows_of(self, start: datetime) -> pl.DataFrame:
        in_window = pl.col(TIMESTAMP).is_between(start, start + LOOP_WINDOW, closed="left")
        return self.written.filter(in_window).sort(INSTANCE_ID, TIMESTAMP)


def _total(samples: Samples, name: str) -> float:
    return sum(value for (sample, _), value in samples.items() if sample == name)


def _last_window_end(samples: Samples) -> float:
    return _total(samples, "scorer_last_window_end_timestamp_seconds")


def _wait_for(url: str, done: Callable[[Samples], bool], what: str) -> Samples:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if done(samples := scrape(url)):
            return samples
        time.sleep(0.05)
    raise AssertionError(f"the scoring loop did not get there in {WAIT_SECONDS} s: {what}")


def _window_scored(url: str, start: datetime) -> Samples:
    end = (start + LOOP_WINDOW).timestamp()
    return _wait_for(url, lambda s: _last_window_end(s) >= end, f"window {start} scored")


def _first_tick(url: str) -> datetime:
    """Wait for the loop's first tick (the window open when it started: no rows yet); the
    window after it is now open and pending."""
    samples = _wait_for(url, lambda s: _last_window_end(s) > 0, "a first tick")
    return datetime.fromtimestamp(_last_window_end(samples), UTC)


@contextmanager
def _scoring_app(scorer: Scorer) -> Iterator[str]:
    """The scorer app with its periodic loop, as ``run_scorer`` serves it; closed after."""
    try:
        with serve_in_thread(create_app(scorer, periodic=True)) as url:
            yield url
    finally:
        scorer.close()


def _loop_settings(registered: Registered, config: RouterConfig) -> ScorerSettings:
    """Short windows, scored through ``config``'s router as in production (gRPC, the router's
    assignment per instance); a failed window is tried again a fifth of a second later."""
    return ScorerSettings(
        window_seconds=LOOP_SECONDS,
        tracking_uri=registered.tracking_uri,
        inference_url=f"127.0.0.1:{config.grpc_port}",
        inference_protocol="grpc",
        ab_router_url=f"http://127.0.0.1:{config.http_port}",
        inference_timeout_s=5.0,
        window_max_attempts=MAX_ATTEMPTS,
        window_retry_seconds=0.2,
    )


def _assert_scored_once(
    store: ObjectStore,
    live: LiveFeatures,
    windows: list[datetime],
    first_tick: datetime,
    samples: Samples,
    served_in_process: dict[str, Predict],
) -> None:
    """Each window's rows predicted once and answered; metrics count every row once."""
    for start in windows:
        rows = live.rows_of(start)
        predictions = read_window_predictions(store, start).sort(INSTANCE_ID, TIMESTAMP)
        assert predictions.select(INSTANCE_ID, TIMESTAMP).equals(
            rows.select(INSTANCE_ID, TIMESTAMP)
        )
        assert predictions["error"].null_count() == predictions.height
        _assert_served_scores(predictions, rows, live.names, served_in_process)
    assert _total(samples, "model_prediction_total") == live.written.height
    assert _total(samples, "model_latency_seconds_count") == INSTANCES * len(windows)
    # One observation per window scored: the first (empty) tick, the windows with rows and
    # any empty window after them; a window scored twice would count twice.
    ticks = (_last_window_end(samples) - first_tick.timestamp()) / LOOP_SECONDS + 1
    assert _total(samples, "scorer_window_duration_seconds_count") == ticks


def test_the_loop_scores_each_new_window_once_as_it_closes(
    registered: Registered,
    served: ServedModels,
    router_config: RouterConfig,
    ab_router: ServerProcess,
    served_in_process: dict[str, Predict],
    tmp_path: Path,
) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "live"))
    live = LiveFeatures(store, served.feature_names, registered.rows)
    scorer = Scorer(_loop_settings(registered, router_config), store, served)
    with _scoring_app(scorer) as url:
        first_tick = _first_tick(url)
        windows = [first_tick + i * LOOP_WINDOW for i in range(3)]
        # A window's rows arrive while the window before it is open, so none is late.
        live.add_window(windows[0])
        live.add_window(windows[1])
        ends = []
        for index, start in enumerate(windows):
            ends.append(_last_window_end(_window_scored(url, start)))
            if index + 2 < len(windows):
                live.add_window(windows[index + 2])
        samples = scrape(url)
    assert ends == sorted(ends)
    _assert_scored_once(store, live, windows, first_tick, samples, served_in_process)
    assert _total(samples, "model_inference_errors_total") == 0


@pytest.fixture
def own_router(
    triton: ServerProcess, router_config: RouterConfig, tmp_path: Path
) -> Iterator[tuple[RouterConfig, Callable[[], None], Callable[[], None]]]:
    """An A/B router of this test's own (the shared one is never stopped): its config and
    functions that stop it and start it again on the same ports."""
    config = router_config.model_copy(update={"http_port": free_port(), "grpc_port": free_port()})
    running: list[ServerProcess] = []

    def start() -> None:
        running.append(start_router(config, tmp_path / "router", tmp_path))

    def stop() -> None:
        while running:
            running.pop().stop()

    start()
    yield config, stop, start
    stop()


def test_the_loop_survives_an_unreachable_endpoint_and_scores_the_window_when_it_is_back(
    registered: Registered,
    served: ServedModels,
    own_router: tuple[RouterConfig, Callable[[], None], Callable[[], None]],
    served_in_process: dict[str, Predict],
    tmp_path: Path,
) -> None:
    config, stop_router, start_router_again = own_router
    store = ObjectStore.from_uri(str(tmp_path / "live"))
    live = LiveFeatures(store, served.feature_names, registered.rows)
    scorer = Scorer(_loop_settings(registered, config), store, served)
    with _scoring_app(scorer) as url:
        first_tick = _first_tick(url)
        windows = [first_tick + i * LOOP_WINDOW for i in range(2)]
        live.add_window(windows[0])
        live.add_window(windows[1])
        stop_router()  # before the first window with rows closes
        # Far more failed attempts than a poisoned window gets: an outage is never skipped.
        failed = _wait_for(
            url,
            lambda s: _failures(s, "endpoint") > 2 * MAX_ATTEMPTS,
            f"more than {2 * MAX_ATTEMPTS} failed attempts",
        )
        # The failed ticks recorded nothing and did not move on: the window is still pending.
        assert _last_window_end(failed) == first_tick.timestamp()
        assert _total(failed, "model_prediction_total") == 0
        assert _total(failed, "scorer_windows_skipped_total") == 0
        assert read_window_predictions(store, windows[0]).is_empty()
        start_router_again()
        _window_scored(url, windows[-1])
        samples = scrape(url)
    _assert_scored_once(store, live, windows, first_tick, samples, served_in_process)
    assert _total(samples, "model_inference_errors_total") >= INSTANCES
    assert _total(samples, "scorer_windows_skipped_total") == 0
    assert _failures(samples, "window") == 0
    assert store.list_keys(f"{SKIPPED_PREFIX}/") == []


def _failures(samples: Samples, reason: str) -> float:
    return samples.get(("scorer_window_failures_total", frozenset({("reason", reason)})), 0.0)


def _skip_records(store: ObjectStore) -> list[dict[str, Any]]:
    return [json.loads(store.read_bytes(key)) for key in store.list_keys(f"{SKIPPED_PREFIX}/")]


def _poison_rows(
    store: ObjectStore, names: list[str], source: NDArray[np.float32], windows: list[datetime]
) -> None:
    """Feature rows of ``windows`` with the first feature as text: a feature job gone wrong."""
    stamps = [w + timedelta(seconds=s) for w in windows for s in range(LOOP_SECONDS)]
    frame = pl.DataFrame(
        {
            INSTANCE_ID: [f"i-{i:04d}" for i in range(INSTANCES) for _ in stamps],
            TIMESTAMP: pl.Series(stamps * INSTANCES, dtype=TIMESTAMP_TYPE),
            **{name: source[: INSTANCES * len(stamps), j] for j, name in enumerate(names)},
        }
    ).with_columns(pl.col(names[0]).cast(pl.String))
    for (day,), part in frame.group_by(pl.col(TIMESTAMP).dt.date()):
        store.write_table(features_path(day), part.to_arrow())


def test_a_window_of_wrongly_typed_rows_is_retried_then_skipped_recorded_and_counted(
    registered: Registered,
    served: ServedModels,
    router_config: RouterConfig,
    ab_router: ServerProcess,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Two windows whose rows hold a feature as text (the models take float32): each is tried
    ``MAX_ATTEMPTS`` times, then skipped with a record, a log line and a count, and the loop
    scores the next window. Before, the loop retried the first of them every second forever."""
    caplog.set_level(logging.WARNING, logger="serving.scorer.loop")
    store = ObjectStore.from_uri(str(tmp_path / "live"))
    scorer = Scorer(_loop_settings(registered, router_config), store, served)
    with _scoring_app(scorer) as url:
        first_tick = _first_tick(url)
        poisoned = [first_tick, first_tick + LOOP_WINDOW]
        _poison_rows(store, served.feature_names, registered.rows, poisoned)
        after = first_tick + 2 * LOOP_WINDOW  # no rows: scored (empty) once reached
        samples = _window_scored(url, after)
    records = _skip_records(store)
    assert [r["window_start"] for r in records] == [w.isoformat() for w in poisoned]
    for record, start in zip(records, poisoned, strict=True):
        assert record["window_end"] == (start + LOOP_WINDOW).isoformat()
        assert record["attempts"] == MAX_ATTEMPTS
        assert "non-numeric" in record["error"]
        assert not store.exists(predictions_key(start))
    assert store.exists(predictions_key(after))
    assert _total(samples, "scorer_windows_skipped_total") == len(poisoned)
    assert _failures(samples, "window") == MAX_ATTEMPTS * len(poisoned)
    assert _failures(samples, "endpoint") == _failures(samples, "store") == 0
    assert _total(samples, "model_prediction_total") == 0
    skipped_lines = [
        r.getMessage() for r in caplog.records if "skipped the window" in r.getMessage()
    ]
    assert len(skipped_lines) == len(poisoned)
    for line, start in zip(skipped_lines, poisoned, strict=True):
        assert start.isoformat() in line
        assert skipped_key(start) in line
        assert "non-numeric" in line


def test_windows_of_a_corrupt_feature_file_are_skipped_until_it_is_rewritten(
    registered: Registered,
    served: ServedModels,
    router_config: RouterConfig,
    ab_router: ServerProcess,
    served_in_process: dict[str, Predict],
    tmp_path: Path,
) -> None:
    """A feature file that is not Parquet poisons every window of its day: each is skipped in
    turn (the loop keeps up with the clock instead of sticking to the first), and once the
    feature job rewrites the file, the next window is scored from it."""
    store = ObjectStore.from_uri(str(tmp_path / "live"))
    live = LiveFeatures(store, served.feature_names, registered.rows)
    scorer = Scorer(_loop_settings(registered, router_config), store, served)
    with _scoring_app(scorer) as url:
        first_tick = _first_tick(url)
        now = datetime.now(UTC)
        for day in {now.date(), (now + 4 * LOOP_WINDOW).date()}:
            store.write_bytes(features_path(day), b"PAR1 this is not a parquet file")
        _wait_for(url, lambda s: _total(s, "scorer_windows_skipped_total") >= 2, "2 skipped")
        healed = window_start_of(datetime.now(UTC), LOOP_WINDOW) + LOOP_WINDOW  # not closed
        live.add_window(healed)
        samples = _window_scored(url, healed)
    records = _skip_records(store)
    skipped = [datetime.fromisoformat(r["window_start"]) for r in records]
    assert skipped[:2] == [first_tick, first_tick + LOOP_WINDOW]
    assert skipped == [first_tick + i * LOOP_WINDOW for i in range(len(skipped))]
    assert all(r["attempts"] == MAX_ATTEMPTS for r in records)
    assert all(r["error_type"] == "ArrowInvalid" for r in records), records
    assert _total(samples, "scorer_windows_skipped_total") == len(records)
    # The window open while the file was rewritten may have failed once or twice first.
    assert 0 <= _failures(samples, "window") - MAX_ATTEMPTS * len(records) < MAX_ATTEMPTS
    rows = live.rows_of(healed)
    predictions = read_window_predictions(store, healed).sort(INSTANCE_ID, TIMESTAMP)
    assert predictions.select(INSTANCE_ID, TIMESTAMP).equals(rows.select(INSTANCE_ID, TIMESTAMP))
    _assert_served_scores(predictions, rows, live.names, served_in_process)


def test_an_unreachable_store_is_waited_for_never_skipped(tmp_path: Path) -> None:
    """S3 down (nothing listens at its endpoint): the loop keeps trying, counts the failures
    as the store's, skips nothing, even with a single attempt allowed per window."""
    nowhere = ObjectStore.from_uri(
        "s3://vigil/store", endpoint_url=f"http://127.0.0.1:{free_port()}"
    )
    scorer = offline_scorer(nowhere, ["cpu"])
    scorer.settings = scorer.settings.model_copy(
        update={"window_seconds": 1, "window_max_attempts": 1, "window_retry_seconds": 0.2}
    )
    assert failure_reason(scorer, ValueError("a window's own error")) == "store"
    with _scoring_app(scorer) as url:
        samples = _wait_for(url, lambda s: _failures(s, "store") >= 2, "two store failures")
    assert _total(samples, "scorer_windows_skipped_total") == 0
    assert _failures(samples, "window") == 0
    local = offline_scorer(ObjectStore.from_uri(str(tmp_path / "store")), ["cpu"])
    try:
        assert failure_reason(local, ValueError("a window's own error")) == "window"
        assert failure_reason(local, WindowNotScoredError("endpoint down")) == "endpoint"
    finally:
        local.close()


def test_a_restarted_scorer_scores_the_windows_that_closed_while_it_was_down(
    registered: Registered,
    served: ServedModels,
    router_config: RouterConfig,
    ab_router: ServerProcess,
    served_in_process: dict[str, Predict],
    tmp_path: Path,
) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "live"))
    live = LiveFeatures(store, served.feature_names, registered.rows)
    settings = _loop_settings(registered, router_config)
    with _scoring_app(Scorer(settings, store, served)) as url:
        first_tick = _first_tick(url)
        before = first_tick
        live.add_window(before)
        _window_scored(url, before)
        # The scorer goes down while the next window is open; its rows and the next
        # window's arrive and both windows close before it is back.
        missed = [before + LOOP_WINDOW, before + 2 * LOOP_WINDOW]
        for start in missed:
            live.add_window(start)
        first_run = scrape(url)
    while datetime.now(UTC) < missed[-1] + LOOP_WINDOW:
        time.sleep(0.1)
    with _scoring_app(Scorer(settings, store, served)) as url:
        second_run = _window_scored(url, missed[-1])
    scored = [before, *missed]
    for start in scored:
        predictions = read_window_predictions(store, start).sort(INSTANCE_ID, TIMESTAMP)
        rows = live.rows_of(start)
        assert predictions.select(INSTANCE_ID, TIMESTAMP).equals(
            rows.select(INSTANCE_ID, TIMESTAMP)
        ), start
        _assert_served_scores(predictions, rows, live.names, served_in_process)
    # Every row counted once over the two runs: nothing skipped, nothing scored twice.
    counted = _total(first_run, "model_prediction_total") + _total(
        second_run, "model_prediction_total"
    )
    assert counted == live.written.height


def test_a_replay_stops_at_a_window_nobody_answered_and_records_nothing_of_it(
    registered: Registered, served: ServedModels, tmp_path: Path
) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "live"))
    live = LiveFeatures(store, served.feature_names, registered.rows)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    live.add_window(start)
    nowhere = f"127.0.0.1:{free_port()}"  # nothing listens there
    scorer = Scorer(
        ScorerSettings(window_seconds=LOOP_SECONDS, inference_url=nowhere), store, served
    )
    try:
        with pytest.raises(WindowNotScoredError, match="no request of the window starting"):
            replay(scorer, start, start + 2 * LOOP_WINDOW)
        registry = scorer.metrics.registry
    finally:
        scorer.close()
    assert read_window_predictions(store, start).is_empty()
    assert registry.get_sample_value("scorer_window_duration_seconds_count") == 0
    assert registry.get_sample_value("scorer_last_window_end_timestamp_seconds") == 0
