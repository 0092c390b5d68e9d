"""A watch as the command line starts it: the source it names, the state, the metrics
endpoint and the explainer, assembled and closed together."""

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from contracts.settings import Settings
from telemetry.logs.watch.explain import WindowExplainer
from telemetry.logs.watch.kinesis import (
    KinesisSource,
    kinesis_client,
    open_checkpoint_store,
    stream_name,
)
from telemetry.logs.watch.metrics import WatchMetrics, serve_metrics
from telemetry.logs.watch.settings import LogWatchSettings
from telemetry.logs.watch.sources import FileTail, LineSource, StreamSource
from telemetry.logs.watch.watcher import StateFiles, Watcher


def open_source(
    source: str,
    settings: Settings,
    watch: LogWatchSettings,
    metrics: WatchMetrics | None = None,
    *,
    from_start: bool = False,
) -> LineSource:
    """The source a command line names: ``-`` (standard input), ``kinesis://STREAM`` or a
    file path.

    Raises:
        ValueError: When a ``kinesis://`` source names no stream, or the path is a folder.
    """
    if source == "-":
        return StreamSource(sys.stdin.buffer)
    stream = stream_name(source)
    if stream is not None:
        store, prefix = open_checkpoint_store(settings, watch)
        return KinesisSource(
            stream, kinesis_client(settings), store, prefix, watch, metrics=metrics
        )
    path = Path(source)
    if path.is_dir():
        raise ValueError(f"{source} is a folder; give a log file")
    return FileTail(path, from_start=from_start)


@contextmanager
def watch_session(
    source: str,
    settings: Settings,
    watch: LogWatchSettings,
    *,
    state: str | None = None,
    log_format: str | None = None,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    from_start: bool = False,
) -> Iterator[Watcher]:
    """A watcher over ``source``, with everything it holds released when the block ends.

    Args:
        source: A file path, ``-`` or ``kinesis://STREAM``.
        settings: Where AWS and the object store are.
        watch: The watch settings (window, thresholds, explainer, Kinesis).
        state: Template state path (a file or ``s3://``); None: not kept.
        log_format: A LogPAI header format or a named-group regex.
        metrics_port: Serve ``/metrics`` on this port; None: no endpoint.
        metrics_host: The address the endpoint binds.
        from_start: For a file: read what it already holds first.

    Yields:
        The watcher, ready to ``run``.

    Raises:
        ValueError: A bad source, or a state file that is not a state.
        OSError: The metrics port is taken.
    """
    with ExitStack() as stack:
        metrics = WatchMetrics()
        files = StateFiles.at(state, settings) if state else None
        miner, history = files.load() if files else (None, None)
        line_source = open_source(source, settings, watch, metrics, from_start=from_start)
        stack.callback(line_source.close)
        if metrics_port is not None:
            stop: Callable[[], None] = serve_metrics(metrics, metrics_port, metrics_host)
            stack.callback(stop)
        explainer = None
        if watch.explain_url:
            explainer = WindowExplainer(
                watch.explain_url,
                watch.explain_api_key,
                watch.explain_timeout_s,
                watch.explain_min_severity,
                metrics,
            )
            stack.callback(explainer.close)
        yield Watcher(
            line_source,
            watch,
            miner=miner,
            history=history,
            log_format=log_format,
            metrics=metrics,
            explainer=explainer,
            state=files,
        )
