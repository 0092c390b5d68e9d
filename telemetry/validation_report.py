"""Validation reports: what each rule found on one batch, its quality score, and its verdict.

A report lists every rule run on a batch (``telemetry.validation`` runs them); it is written
as JSON beside the data it describes, and ``ensure_valid`` rejects a batch that broke a
critical rule. Warnings are only reported.
"""

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from contracts.layout import quality_report_path
from contracts.store import ObjectStore

Severity = Literal["critical", "warning"]
JsonScalar = str | int | float | bool | None


class CheckResult(BaseModel):
    """The outcome of one rule on one column (or on whole records when ``column`` is None)."""

    model_config = ConfigDict(extra="forbid")

    rule: str
    column: str | None
    severity: Severity
    passed: bool
    failed_rows: int
    sample: list[dict[str, JsonScalar]]
    detail: str | None = None


class ValidationReport(BaseModel):
    """Every rule run on one batch, and the batch's quality score."""

    # Offending values are often NaN or infinite; as strings they stay visible in valid JSON.
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    dataset: Literal["raw", "features"]
    rows: int
    checks: list[CheckResult]
    quality_score: float
    parse_error_rows: int | None = None

    @property
    def failed_critical(self) -> list[CheckResult]:
        return [c for c in self.checks if c.severity == "critical" and not c.passed]


class DataValidationError(ValueError):
    """A batch broke at least one critical rule; the message lists each with sample rows."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        failed = report.failed_critical
        lines = [
            f"{report.dataset} batch rejected: {len(failed)} critical check(s) failed "
            f"(quality score {report.quality_score}%)"
        ]
        for check in failed:
            where = f" on column {check.column!r}" if check.column else ""
            line = f"- {check.rule}{where}: {check.failed_rows} of {report.rows} rows"
            if check.detail:
                line += f" ({check.detail})"
            if check.sample:
                line += f", e.g. {check.sample}"
            lines.append(line)
        super().__init__("\n".join(lines))


def write_report(store: ObjectStore, data_key: str, report: ValidationReport) -> str:
    """Write ``report`` as JSON beside the data it describes.

    Args:
        store: The object store holding the data.
        data_key: Key of the validated Parquet file.
        report: Its validation report.

    Returns:
        The key written, ``contracts.layout.quality_report_path(data_key)``.
    """
    key = quality_report_path(data_key)
    store.write_bytes(key, report.model_dump_json(indent=2).encode())
    return key


def ensure_valid(report: ValidationReport) -> None:
    """Raise ``DataValidationError`` if any critical check failed; warnings pass.

    The message names each failed rule and column, how many rows broke it and a sample of them.
    """
    if report.failed_critical:
        raise DataValidationError(report)


def quality_score(checks: Sequence[CheckResult], rows: int) -> float:
    """100 × (checks × rows − Σ failed rows) / (checks × rows), rounded down to 0.1.

    Each check counts once per row, so a rule failing on 1 % of rows costs 1 % / checks.
    Rounding down keeps 100.0 for batches where every check passed on every row.
    """
    cells = len(checks) * rows
    if cells == 0:
        return 100.0
    failed = sum(min(c.failed_rows, rows) for c in checks)
    return (1000 * (cells - failed) // cells) / 10
