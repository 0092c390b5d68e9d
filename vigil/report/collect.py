"""Gather the report's content from the object store, MLflow and the A/B report.

Sources: the store (raw and feature files, incidents, validation reports, the scorer's
prediction log and the explanations it received), MLflow (the alias holders, the champion
run's ``summary.json`` and reference distributions) and the A/B report the demo wrote, whose
numbers are shown as they are.
"""

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mlflow.exceptions import MlflowException
from pydantic import ValidationError

from contracts.dataset import read_dataset_info
from contracts.explanation import ExplainResponse, LogEvidence
from contracts.features import (
    ERROR_BURST,
    LOG_TEMPLATE_COLUMNS,
    NOVEL_TEMPLATES,
    RARE_TEMPLATE_RATIO,
    TEMPLATE_ENTROPY,
    TOP_TEMPLATE_COLUMNS,
)
from contracts.layout import INCIDENTS_PATH
from contracts.mlflow_registry import download_run_artifact
from contracts.serving import SUMMARY_ARTIFACT
from contracts.store import ObjectStore
from contracts.telemetry import TEMPLATE_MINER_STATE_PATH
from serving.scorer.ab_report import ABReport
from serving.scorer.drift import DriftMonitor
from serving.scorer.explanation_log import LoggedExplanation, read_explanations
from serving.scorer.prediction_log import read_predictions
from serving.scorer.served_models import ServedModels, load_served_models
from serving.scorer.settings import ScorerSettings
from serving.scorer.window_features import read_window_features
from telemetry.logs.state import load_miner
from training.run_directory import TrainingSummary
from vigil.report.detection import arm_detection, instance_timelines, scored_windows
from vigil.report.model import DriftRow, ExplanationCard, ReportData
from vigil.report.store_summary import read_incidents, summarize_store

DEFAULT_WINDOW = timedelta(seconds=ScorerSettings.model_fields["window_seconds"].default)
SOURCES_PER_CARD = 3
LOG_EVIDENCE_PER_CARD = 3
LOG_FEATURE_MEANING = {
    NOVEL_TEMPLATES: "templates new on the instance in the last 5 minutes",
    RARE_TEMPLATE_RATIO: "share of the last 15 minutes' events with a rare template",
    ERROR_BURST: "largest burst of one error template against its own history",
    TEMPLATE_ENTROPY: "entropy of the last 15 minutes' templates",
}

EXPLANATION_CARDS = 12


def collect_report(
    store: ObjectStore,
    tracking_uri: str,
    ab: ABReport | None,
    start: datetime,
    end: datetime,
    *,
    window: timedelta = DEFAULT_WINDOW,
    top_features: int = 15,
    timeline_instances: int = 4,
    max_cards: int = EXPLANATION_CARDS,
) -> ReportData:
    """Everything the page shows about the windows starting in ``[start, end)``.

    Args:
        store: the object store the demo (or a test) filled.
        tracking_uri: the MLflow server holding the champion / challenger aliases.
        ab: the A/B report over the same range, or None when there is none.
        start: first window start of the scored range.
        end: end of the scored range (exclusive).
        window: the scorer's window length (ground truth is per window).
        top_features: how many features the drift section lists.
        timeline_instances: how many instances the timeline shows.
        max_cards: how many explanation cards are shown (the most confident first).
    """
    served = load_served_models(tracking_uri)
    arms = {alias: arm.model for alias, arm in served.arms.items()}
    notes: list[str] = []
    predictions = read_predictions(store, start, end)
    if store.exists(INCIDENTS_PATH):
        windows = scored_windows(store, predictions, window)
    else:
        windows = scored_windows(store, predictions.head(0), window)
        notes.append("the store holds no incidents: there is no ground truth to compare with")
    logged = read_explanations(store, start, end)
    explained: dict[str, list[datetime]] = {}
    for record in logged:
        explained.setdefault(record.request.instance_id, []).append(record.request.window_start)
    drift = _drift(store, served, start, end)
    return ReportData(
        generated_at=datetime.now(UTC),
        start=start,
        end=end,
        window_minutes=window.total_seconds() / 60,
        run_id=served.champion.run_id,
        arms={alias: f"{arm.model} v{arm.version}" for alias, arm in served.arms.items()},
        data=summarize_store(store, start, end),
        training=_training_summary(tracking_uri, served.champion.run_id),
        detection=arm_detection(windows, arms),
        ab=ab,
        drift=sorted(drift, key=lambda row: -row.psi)[:top_features],
        drift_features=len(drift),
        log_drift=_log_drift(store, drift),
        timelines=instance_timelines(
            windows, read_incidents(store), explained, start, end, window, timeline_instances
        ),
        explanations=[_card(r) for r in sorted(logged, key=lambda r: -r.request.score)[:max_cards]],
        explanations_total=len(logged),
        notes=notes,
    )


def _training_summary(tracking_uri: str, run_id: str) -> TrainingSummary | None:
    """The champion run's training summary; None when the run has none."""
    with tempfile.TemporaryDirectory(prefix="vigil-report-") as tmp:
        try:
            path = download_run_artifact(tracking_uri, run_id, SUMMARY_ARTIFACT, Path(tmp))
        except (MlflowException, OSError):
            return None
        return TrainingSummary.model_validate_json(path.read_text())


def _drift(
    store: ObjectStore, served: ServedModels, start: datetime, end: datetime
) -> list[DriftRow]:
    """PSI and KL of the range's feature rows against the champion's training reference."""
    rows = read_window_features(store, start, end, served.feature_names)
    if rows.height == 0:
        return []
    monitor = DriftMonitor(served.reference, end - start)
    monitor.add(end, rows)
    return [DriftRow(name, psi, kl) for name, (psi, kl) in monitor.drift().items()]


def _log_drift(store: ObjectStore, drift: list[DriftRow]) -> list[DriftRow]:
    """The log-template features' drift rows, each with what it counts: a top slot names its
    template (the dataset's catalogue, read through the store's template miner)."""
    counts = dict(LOG_FEATURE_MEANING)
    catalogue = read_dataset_info(store).log_templates
    if catalogue is not None and store.exists(TEMPLATE_MINER_STATE_PATH):
        miner = load_miner(store, TEMPLATE_MINER_STATE_PATH)
        for column, template_id in zip(TOP_TEMPLATE_COLUMNS, catalogue.top, strict=False):
            template = miner.template(template_id)
            counts[column] = template.text if template else f"template {template_id}"
    rows = [row for row in drift if row.feature in LOG_TEMPLATE_COLUMNS]
    return [
        DriftRow(row.feature, row.psi, row.kl, counts.get(row.feature, "no template (no logs)"))
        for row in sorted(rows, key=lambda row: LOG_TEMPLATE_COLUMNS.index(row.feature))
    ]


def _evidence_line(evidence: LogEvidence) -> str:
    return (
        f"{evidence.kind} {evidence.level or ''} ×{evidence.count} "
        f"(usually {evidence.baseline:g}): {evidence.template}"
    ).replace("  ", " ")


def _card(record: LoggedExplanation) -> ExplanationCard:
    request, answer = record.request, record.response
    try:
        response: ExplainResponse | None = ExplainResponse.model_validate(answer)
    except ValidationError:
        response = None
    sources = (
        [
            f"{item.kind}: {item.document}"
            + (f" § {item.section}" if item.section else "")
            + f" (score {item.score:.2f})"
            for item in response.context[:SOURCES_PER_CARD]
        ]
        if response
        else []
    )
    return ExplanationCard(
        instance_id=request.instance_id,
        window_start=request.window_start,
        score=request.score,
        model=request.model,
        top_features=[f.name for f in request.top_features[:5]],
        log_evidence=[_evidence_line(e) for e in request.log_evidence[:LOG_EVIDENCE_PER_CARD]],
        analysis_type=response.analysis_type if response else str(answer.get("analysis_type", "")),
        root_cause=response.root_cause if response else str(answer.get("root_cause", "")),
        impact=response.impact if response else str(answer.get("impact", "")),
        actions=response.actions if response else [],
        prevention=response.prevention if response else [],
        sources=sources,
        degraded=response.degraded if response else bool(answer.get("degraded", False)),
        degraded_reason=response.degraded_reason if response else None,
        complete=response is not None,
    )
