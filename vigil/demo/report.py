"""``vigil report``: rebuild the demo's HTML report from its work folder, without rerunning it.

The scored range and the A/B numbers come from the A/B report the demo wrote; the rest from
the demo's store and its MLflow registry. When the demo's MLflow is not running (``vigil demo
--once``), one is started on the same registry for the rebuild and stopped afterwards.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from contracts.store import ObjectStore
from serving.scorer.ab_report import REPORT_JSON, ABReport
from vigil.demo.run import DemoConfig
from vigil.processes import start_mlflow
from vigil.report.collect import collect_report
from vigil.report.publish import log_report
from vigil.report.render import write_report
from vigil.stack import stack_status


@dataclass(frozen=True)
class RebuiltReport:
    path: Path
    run_id: str
    artifact: str


def rebuild_demo_report(config: DemoConfig) -> RebuiltReport:
    """Collect, write ``config.report_path`` and log it to the champion's training run.

    Raises:
        FileNotFoundError: the work folder lacks the demo's store, registry or A/B report.
    """
    ab_path = config.work_path / "reports" / REPORT_JSON
    mlflow_root = config.stack_path / "mlflow"
    for needed in (config.store_path, mlflow_root, ab_path):
        if not needed.exists():
            raise FileNotFoundError(f"{needed} does not exist: run `vigil demo` first")
    ab = ABReport.model_validate_json(ab_path.read_text())
    if ab.start is None or ab.end is None:
        raise ValueError(f"{ab_path} names no scored range")
    store = ObjectStore.from_uri(str(config.store_path))
    with _demo_mlflow(config) as tracking_uri:
        data = collect_report(store, tracking_uri, ab, ab.start, ab.end)
        path = write_report(data, config.report_path)
        artifact = log_report(path, tracking_uri, data.run_id)
    return RebuiltReport(path, data.run_id, artifact)


@contextmanager
def _demo_mlflow(config: DemoConfig) -> Iterator[str]:
    """The demo's MLflow URL: the running one, or one started on its registry for the block."""
    for status in stack_status(config.stack_path):
        if status.service.name == "mlflow" and status.healthy:
            yield status.service.url
            return
    server = start_mlflow(config.stack_path / "mlflow", config.stack_path / "logs")
    try:
        yield server.url
    finally:
        server.stop()
