"""What the report shows, section by section, collected before anything is rendered.

A section whose source had nothing holds None (or an empty list) and the page says so.
"""

from dataclasses import dataclass, field
from datetime import datetime

from serving.scorer.ab_report import ABReport
from training.run_directory import TrainingSummary
from vigil.report.svg import Span


@dataclass(frozen=True)
class QualitySummary:
    """The validation reports found beside the data, and their row-weighted scores."""

    files: int
    rejected: int
    warnings: int  # files with a failed warning-level check
    score_raw: float | None
    score_features: float | None


@dataclass(frozen=True)
class DataSummary:
    """What the store holds."""

    dataset: str
    metrics: int
    raw_files: int
    raw_rows: int
    feature_files: int
    feature_rows: int
    feature_columns: int
    instances: int
    first: datetime | None
    last: datetime | None
    incidents: int
    incidents_by_type: dict[str, int]
    incidents_in_range: int
    quality: QualitySummary | None


@dataclass(frozen=True)
class ArmDetection:
    """One arm's replayed windows against ground truth: curves and confusion matrix."""

    alias: str
    model: str
    color: str
    windows: int
    anomalous: int
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    roc: list[tuple[float, float]]  # (false positive rate, true positive rate)
    pr: list[tuple[float, float]]  # (recall, precision)
    roc_auc: float | None
    pr_auc: float | None

    @property
    def precision(self) -> float | None:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.anomalous if self.anomalous else None


@dataclass(frozen=True)
class DriftRow:
    feature: str
    psi: float
    kl: float
    counts: str = ""  # what a log-template feature counts (its template, for a top slot)


@dataclass(frozen=True)
class InstanceTimeline:
    """One instance over the range: true incidents, detected runs, explained windows."""

    instance_id: str
    model: str | None
    true_spans: list[Span]
    detected_spans: list[Span]
    explained_at: list[datetime]


@dataclass(frozen=True)
class ExplanationCard:
    """One explanation as the service returned it (``complete`` False when the answer did not
    match the contract; what it did hold is still shown)."""

    instance_id: str
    window_start: datetime
    score: float
    model: str
    top_features: list[str]
    log_evidence: list[str]  # the window's novel / spiking / bursting templates, one line each
    analysis_type: str
    root_cause: str
    impact: str
    actions: list[str]
    prevention: list[str]
    sources: list[str]
    degraded: bool
    degraded_reason: str | None
    complete: bool


@dataclass(frozen=True)
class ReportData:
    """Everything the page shows."""

    generated_at: datetime
    start: datetime
    end: datetime
    window_minutes: float
    run_id: str  # the champion's training run
    arms: dict[str, str]  # alias -> "model vN"
    data: DataSummary
    training: TrainingSummary | None
    detection: list[ArmDetection]
    ab: ABReport | None
    drift: list[DriftRow]
    drift_features: int  # features drift was computed for (the table shows the top ones)
    log_drift: list[DriftRow]  # every log-template feature, whatever its rank
    timelines: list[InstanceTimeline]
    explanations: list[ExplanationCard]
    explanations_total: int
    notes: list[str] = field(default_factory=list)
