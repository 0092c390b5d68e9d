"""The A/B report files are replaced whole or not at all.

``--apply`` acts on the decision and dashboards read ``ab_report.json``: a write cut short
(full disk, quota, a killed process) must leave the previous report, never a torn file. The
cut is real: a child process whose file-size limit stops the write part way (EFBIG).
"""

from pathlib import Path

import polars as pl

from contracts.store import TMP_MARKER
from serving.scorer.ab_report import (
    REPORT_HTML,
    REPORT_JSON,
    ABReport,
    build_ab_report,
    write_ab_report,
)
from serving.scorer.prediction_log import FEEDBACK_SCHEMA, PREDICTION_SCHEMA
from tests.contracts.interrupted_writes import run_child

ARMS = {"champion": "xgboost_anomaly/1", "challenger": "catboost_anomaly/1"}


def _report() -> ABReport:
    predictions = pl.DataFrame(pl.from_arrow(PREDICTION_SCHEMA.empty_table()))
    feedback = pl.DataFrame(pl.from_arrow(FEEDBACK_SCHEMA.empty_table()))
    return build_ab_report(predictions, feedback, ARMS, {"champion": 70, "challenger": 30})


def test_report_written_then_read_back(tmp_path: Path) -> None:
    json_path, html_path = write_ab_report(_report(), tmp_path / "new" / "report")
    assert ABReport.model_validate_json(json_path.read_text()).decision == "keep_champion"
    assert html_path.read_text().startswith("<!")
    assert sorted(p.name for p in json_path.parent.iterdir()) == [REPORT_HTML, REPORT_JSON]


def test_report_write_cut_short_keeps_the_previous_report(tmp_path: Path) -> None:
    json_path, html_path = write_ab_report(_report(), tmp_path)
    before = json_path.read_bytes(), html_path.read_bytes()
    child = run_child(
        f"""
from pathlib import Path
from serving.scorer.ab_report import ABReport, write_ab_report
report = ABReport.model_validate_json(Path({str(json_path)!r}).read_text())
report = report.model_copy(update={{"reason": "x" * 100_000}})
limit_file_size(512)
try:
    write_ab_report(report, Path({str(tmp_path)!r}))
except OSError as error:
    print(error.errno)
"""
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "27"  # EFBIG: the write was cut short
    assert (json_path.read_bytes(), html_path.read_bytes()) == before
    assert [p for p in tmp_path.iterdir() if TMP_MARKER in p.name] == []
