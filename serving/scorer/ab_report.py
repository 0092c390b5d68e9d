"""The A/B analysis: how each arm did on live traffic, whether the difference is real, and
what to do about it.

Inputs are the scorer's prediction log and the ground-truth feedback (``serving.
prediction_log``). A *request* is one instance's rows of one window (one arm answers it);
its verdict is 1 when any row was flagged, and that verdict is what a feedback label is
compared with. Per arm: traffic share, error rate, latency percentiles of its requests, and
precision / recall / F1 / accuracy on the labelled ones. A chi-square test of independence
on the arms' labelled outcomes (correct / incorrect) says whether they differ beyond chance.

Decision: promote the challenger when both arms have at least ``min_labels`` labels, the
test is significant (p < alpha), the challenger's F1 is higher and its error rate is not
worse by more than ``ERROR_RATE_TOLERANCE``; otherwise keep the champion. Promotion swaps the
MLflow aliases (``promote_challenger``); the router's weights are per alias, so the model now
champion receives the champion's share once the repository and router are rebuilt.
"""

import html
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from mlflow import MlflowClient
from pydantic import BaseModel
from scipy.stats import chi2_contingency

from contracts.serving import CHALLENGER, CHAMPION
from contracts.store import ObjectStore, write_file_atomically
from serving.scorer.prediction_log import read_feedback, read_predictions
from serving.scorer.served_models import ServedModels

ERROR_RATE_TOLERANCE = 0.01
REPORT_JSON = "ab_report.json"
REPORT_HTML = "ab_report.html"
Decision = Literal["promote_challenger", "keep_champion"]


class ArmStats(BaseModel):
    """One arm's traffic, reliability, speed and quality."""

    alias: str
    model: str
    requests: int
    rows: int
    traffic_share: float
    errors: int
    error_rate: float
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    labelled: int
    true_positives: int
    false_positives: int
    true_negatives: int
    false_negatives: int
    precision: float | None
    recall: float | None
    f1: float | None
    accuracy: float | None


class ChiSquareTest(BaseModel):
    """Chi-square test of independence of arm and outcome (correct / incorrect)."""

    statistic: float
    p_value: float
    dof: int
    table: list[list[int]]
    significant: bool


class ABReport(BaseModel):
    """The analysis, the decision and what applying it changes."""

    generated_at: datetime
    start: datetime | None
    end: datetime | None
    arms: list[ArmStats]
    unattributed_requests: int
    chi_square: ChiSquareTest | None
    alpha: float
    min_labels: int
    decision: Decision
    reason: str
    weights: dict[str, int]
    traffic_now: dict[str, int]
    traffic_after: dict[str, int]
    aliases_after: dict[str, str]


def build_ab_report(
    predictions: pl.DataFrame,
    feedback: pl.DataFrame,
    arms: Mapping[str, str],
    weights: Mapping[str, int],
    *,
    alpha: float = 0.05,
    min_labels: int = 30,
    start: datetime | None = None,
    end: datetime | None = None,
) -> ABReport:
    """Compare the arms and decide whether to promote the challenger.

    Args:
        predictions: prediction log rows (``PREDICTION_SCHEMA``).
        feedback: feedback rows (``FEEDBACK_SCHEMA``), one label per (instance, window).
        arms: alias -> the model serving it (``champion`` required, ``challenger`` optional).
        weights: alias -> percent of traffic the router sends it.
        alpha: significance level of the chi-square test.
        min_labels: labels each arm needs before a promotion is considered.
        start: the analysed range's start, for the record.
        end: the analysed range's end, for the record.

    Raises:
        ValueError: ``arms`` has no champion.
    """
    if CHAMPION not in arms:
        raise ValueError(f"the arms {dict(arms)} have no {CHAMPION!r}")
    requests = predictions.group_by("instance_id", "window_start").agg(
        pl.col("model").first(),
        pl.len().alias("rows"),
        pl.col("error").is_not_null().any().alias("failed"),
        (pl.col("latency_seconds").first() * 1000).alias("latency_ms"),
        pl.col("result").max().alias("predicted"),
    )
    labelled = requests.join(
        feedback.select("instance_id", "window_start", "label"),
        on=["instance_id", "window_start"],
        how="inner",
    ).filter(~pl.col("failed"))
    total = requests.height
    stats = [
        _arm_stats(alias, model, requests, labelled, total)
        for alias, model in arms.items()
        if alias in (CHAMPION, CHALLENGER)
    ]
    chi_square = _chi_square(stats, alpha)
    decision, reason = _decide(stats, chi_square, min_labels)
    models = dict(arms)
    aliases_after = dict(models)
    if decision == "promote_challenger":
        aliases_after = {CHAMPION: models[CHALLENGER], CHALLENGER: models[CHAMPION]}
    return ABReport(
        generated_at=datetime.now(UTC),
        start=start,
        end=end,
        arms=stats,
        unattributed_requests=requests.filter(~pl.col("model").is_in(list(models.values()))).height,
        chi_square=chi_square,
        alpha=alpha,
        min_labels=min_labels,
        decision=decision,
        reason=reason,
        weights=dict(weights),
        traffic_now={models[a]: weights.get(a, 0) for a in models},
        traffic_after={aliases_after[a]: weights.get(a, 0) for a in aliases_after},
        aliases_after=aliases_after,
    )


def ab_report_from_store(
    store: ObjectStore,
    models: ServedModels,
    weights: Mapping[str, int],
    start: datetime,
    end: datetime,
    *,
    alpha: float = 0.05,
    min_labels: int = 30,
) -> ABReport:
    """The report over the windows starting in ``[start, end)``, with today's alias holders."""
    return build_ab_report(
        read_predictions(store, start, end),
        read_feedback(store, start, end),
        {alias: arm.model for alias, arm in models.arms.items()},
        weights,
        alpha=alpha,
        min_labels=min_labels,
        start=start,
        end=end,
    )


def promote_challenger(tracking_uri: str) -> dict[str, str]:
    """Swap ``champion`` and ``challenger`` in MLflow; returns alias -> "model/version".

    The new champion gets its alias before the old one loses it, so a repository build in
    between still finds a champion.

    Raises:
        ValueError: an alias has no holder.
    """
    client = MlflowClient(tracking_uri)
    holders: dict[str, tuple[str, str]] = {}
    for model in client.search_registered_models():
        for alias, version in model.aliases.items():
            if alias in (CHAMPION, CHALLENGER):
                holders[alias] = (model.name, str(version))
    if set(holders) != {CHAMPION, CHALLENGER}:
        raise ValueError(f"both aliases need a holder to swap them; MLflow has {holders}")
    (old_name, old_version), (new_name, new_version) = holders[CHAMPION], holders[CHALLENGER]
    client.set_registered_model_alias(new_name, CHAMPION, new_version)
    client.delete_registered_model_alias(old_name, CHAMPION)
    client.delete_registered_model_alias(new_name, CHALLENGER)
    client.set_registered_model_alias(old_name, CHALLENGER, old_version)
    return {CHAMPION: f"{new_name}/{new_version}", CHALLENGER: f"{old_name}/{old_version}"}


def write_ab_report(report: ABReport, directory: Path) -> tuple[Path, Path]:
    """Write ``ab_report.json`` and a self-contained ``ab_report.html``; returns both paths.

    Each file is replaced atomically (``contracts.store.write_file_atomically``): a crash or
    a failed write leaves the previous report whole, never a torn one that ``--apply`` or a
    reader would act on.
    """
    json_path, html_path = directory / REPORT_JSON, directory / REPORT_HTML
    write_file_atomically(json_path, report.model_dump_json(indent=2).encode())
    write_file_atomically(html_path, _html(report).encode())
    return json_path, html_path


def _arm_stats(
    alias: str, model: str, requests: pl.DataFrame, labelled: pl.DataFrame, total: int
) -> ArmStats:
    mine = requests.filter(pl.col("model") == model)
    ok = mine.filter(~pl.col("failed"))
    latency = ok["latency_ms"].to_numpy()
    p50, p95, p99 = (
        (float(v) for v in np.percentile(latency, [50, 95, 99])) if len(latency) else (None,) * 3
    )
    judged = labelled.filter(pl.col("model") == model)
    predicted, actual = judged["predicted"].to_numpy(), judged["label"].to_numpy()
    tp = int(np.sum((predicted == 1) & (actual == 1)))
    fp = int(np.sum((predicted == 1) & (actual == 0)))
    tn = int(np.sum((predicted == 0) & (actual == 0)))
    fn = int(np.sum((predicted == 0) & (actual == 1)))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall
        else None
    )
    errors = int(mine["failed"].sum())
    return ArmStats(
        alias=alias,
        model=model,
        requests=mine.height,
        rows=int(mine["rows"].sum()),
        traffic_share=mine.height / total if total else 0.0,
        errors=errors,
        error_rate=errors / mine.height if mine.height else 0.0,
        latency_p50_ms=p50,
        latency_p95_ms=p95,
        latency_p99_ms=p99,
        labelled=judged.height,
        true_positives=tp,
        false_positives=fp,
        true_negatives=tn,
        false_negatives=fn,
        precision=precision,
        recall=recall,
        f1=f1,
        accuracy=(tp + tn) / judged.height if judged.height else None,
    )


def _chi_square(stats: list[ArmStats], alpha: float) -> ChiSquareTest | None:
    """None with fewer than two arms, or when an outcome never occurs (no test possible)."""
    if len(stats) < 2:
        return None
    table = [
        [s.true_positives + s.true_negatives, s.false_positives + s.false_negatives] for s in stats
    ]
    counts = np.asarray(table)
    if (counts.sum(axis=0) == 0).any() or (counts.sum(axis=1) == 0).any():
        return None
    result = chi2_contingency(counts)
    p_value = float(result.pvalue)
    return ChiSquareTest(
        statistic=float(result.statistic),
        p_value=p_value,
        dof=int(result.dof),
        table=table,
        significant=p_value < alpha,
    )


def _decide(
    stats: list[ArmStats], chi_square: ChiSquareTest | None, min_labels: int
) -> tuple[Decision, str]:
    by_alias = {s.alias: s for s in stats}
    champion, challenger = by_alias[CHAMPION], by_alias.get(CHALLENGER)
    if challenger is None:
        return "keep_champion", "there is no challenger"
    if min(champion.labelled, challenger.labelled) < min_labels:
        return "keep_champion", (
            f"too little feedback: {champion.labelled} labels on the champion and "
            f"{challenger.labelled} on the challenger, {min_labels} needed on each"
        )
    if chi_square is None or not chi_square.significant:
        p = "n/a" if chi_square is None else f"{chi_square.p_value:.3g}"
        return "keep_champion", f"no significant difference between the arms (p = {p})"
    f1_champion, f1_challenger = champion.f1 or 0.0, challenger.f1 or 0.0
    if f1_challenger <= f1_champion:
        return "keep_champion", (
            f"the champion's F1 {f1_champion:.3f} is at least the challenger's "
            f"{f1_challenger:.3f} (p = {chi_square.p_value:.3g})"
        )
    if challenger.error_rate > champion.error_rate + ERROR_RATE_TOLERANCE:
        return "keep_champion", (
            f"the challenger's F1 is higher but its error rate {challenger.error_rate:.2%} "
            f"exceeds the champion's {champion.error_rate:.2%}"
        )
    return "promote_challenger", (
        f"the challenger's F1 {f1_challenger:.3f} beats the champion's {f1_champion:.3f} "
        f"(chi-square p = {chi_square.p_value:.3g} < alpha)"
    )


def _number(value: float | None, pattern: str = "{:.3f}") -> str:
    return "n/a" if value is None else pattern.format(value)


def _html(report: ABReport) -> str:
    rows = [
        ("model", lambda s: html.escape(s.model)),
        ("requests", lambda s: f"{s.requests:,}"),
        ("traffic share", lambda s: f"{s.traffic_share:.1%}"),
        ("error rate", lambda s: f"{s.error_rate:.2%}"),
        (
            "latency p50 / p95 / p99 (ms)",
            lambda s: " / ".join(
                _number(v, "{:.2f}") for v in (s.latency_p50_ms, s.latency_p95_ms, s.latency_p99_ms)
            ),
        ),
        ("labelled requests", lambda s: f"{s.labelled:,}"),
        ("precision", lambda s: _number(s.precision)),
        ("recall", lambda s: _number(s.recall)),
        ("F1", lambda s: _number(s.f1)),
        ("accuracy", lambda s: _number(s.accuracy)),
        (
            "TP / FP / TN / FN",
            lambda s: (
                f"{s.true_positives} / {s.false_positives} / {s.true_negatives} / "
                f"{s.false_negatives}"
            ),
        ),
    ]
    header = "".join(f"<th>{html.escape(s.alias)}</th>" for s in report.arms)
    body = "".join(
        f"<tr><th>{html.escape(label)}</th>"
        + "".join(f"<td>{cell(s)}</td>" for s in report.arms)
        + "</tr>"
        for label, cell in rows
    )
    test = report.chi_square
    test_text = (
        "not computable (fewer than two arms, or an outcome never occurred)"
        if test is None
        else f"χ² = {test.statistic:.3f}, dof = {test.dof}, p = {test.p_value:.4g} "
        f"({'significant' if test.significant else 'not significant'} at α = {report.alpha})"
    )
    traffic = ", ".join(f"{html.escape(m)} {w} %" for m, w in report.traffic_after.items())
    decision = html.escape(report.decision.replace("_", " "))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Vigil A/B report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        ".decision{font-size:1.3em;font-weight:bold}</style></head><body>"
        "<h1>Vigil A/B report</h1>"
        f"<p>Windows from {_when(report.start)} to {_when(report.end)}; generated "
        f"{_when(report.generated_at)}.</p>"
        f"<table><tr><th></th>{header}</tr>{body}</table>"
        f"<h2>Statistical test</h2><p>{html.escape(test_text)}</p>"
        f"<h2>Decision</h2><p class='decision'>{decision}</p>"
        f"<p>{html.escape(report.reason)}</p>"
        f"<p>Traffic after the decision: {traffic}.</p>"
        "</body></html>"
    )


def _when(moment: datetime | None) -> str:
    return "n/a" if moment is None else html.escape(moment.isoformat())
