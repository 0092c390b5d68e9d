"""Evaluation on the held-out test rows against true labels, plots and the HTML report.

Only true labels (from the store: incidents or point labels) are used here. Pseudo-labels are
training targets; measuring a model against them would only measure agreement with the
Isolation Forest.
"""

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClassificationMetrics(_Record):
    """Point-wise metrics of one scorer at one threshold."""

    rows: int
    anomalies: int
    threshold: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    roc_auc: float | None
    pr_auc: float | None
    false_positive_rate: float
    true_negatives: int
    false_positives: int
    false_negatives: int
    true_positives: int


class ModelEvaluation(_Record):
    """One candidate model's test metrics, fit diagnostics and gate verdict."""

    kind: str
    metrics: ClassificationMetrics
    event_recall: float | None
    gate_failures: list[str]
    train_loss: float
    validation_loss: float
    loss_gap: float
    iterations: int
    trained_rows: int
    fit_seconds: float
    top_features: list[tuple[str, float]]

    @property
    def passed_gates(self) -> bool:
        return not self.gate_failures


def classification_metrics(
    true_labels: NDArray[Any], scores: NDArray[Any], threshold: float
) -> ClassificationMetrics:
    """Metrics of ``scores >= threshold`` against 0/1 ``true_labels``.

    ROC-AUC and PR-AUC are None when the labels hold a single class (they are undefined).

    Args:
        true_labels: 0/1 per row, from the store's labels only.
        scores: anomaly score per row (a probability, or any score higher = more anomalous).
        threshold: score at which a row is flagged.
    """
    if len(true_labels) != len(scores):
        raise ValueError(f"{len(true_labels)} labels but {len(scores)} scores")
    predicted = (scores >= threshold).astype(np.int8)
    tn, fp, fn, tp = (
        int(v) for v in confusion_matrix(true_labels, predicted, labels=[0, 1]).ravel()
    )
    both_classes = 0 < int(true_labels.sum()) < len(true_labels)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return ClassificationMetrics(
        rows=len(true_labels),
        anomalies=int(true_labels.sum()),
        threshold=threshold,
        accuracy=(tp + tn) / len(true_labels) if len(true_labels) else 0.0,
        precision=precision,
        recall=recall,
        f1=2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        roc_auc=float(roc_auc_score(true_labels, scores)) if both_classes else None,
        pr_auc=float(average_precision_score(true_labels, scores)) if both_classes else None,
        false_positive_rate=fp / (fp + tn) if fp + tn else 0.0,
        true_negatives=tn,
        false_positives=fp,
        false_negatives=fn,
        true_positives=tp,
    )


def event_recall(
    instance_ids: NDArray[Any], true_labels: NDArray[Any], predicted: NDArray[Any]
) -> float | None:
    """Share of incidents (runs of consecutive anomalous rows per instance) with a flagged row.

    Rows must be ordered by instance, then time. None when there is no incident.
    """
    boundary = np.ones(len(true_labels), dtype=bool)
    boundary[1:] = (instance_ids[1:] != instance_ids[:-1]) | (true_labels[:-1] == 0)
    starts = boundary & (true_labels == 1)
    if not starts.any():
        return None
    event_of_row = np.cumsum(starts) - 1
    anomalous = true_labels == 1
    caught = np.zeros(int(starts.sum()), dtype=bool)
    np.logical_or.at(caught, event_of_row[anomalous], predicted[anomalous].astype(bool))
    return float(caught.mean())


def top_features(importance: Mapping[str, float], count: int = 10) -> list[tuple[str, float]]:
    """The ``count`` most important features, most important first."""
    return sorted(importance.items(), key=lambda item: (-item[1], item[0]))[:count]


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def plot_roc(true_labels: NDArray[Any], scores: Mapping[str, NDArray[Any]], path: Path) -> Path:
    """ROC curve of each named scorer on the test rows."""
    figure = Figure(figsize=(5, 4))
    axes = figure.add_subplot()
    for name, values in scores.items():
        fpr, tpr, _ = roc_curve(true_labels, values)
        axes.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(true_labels, values):.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    axes.legend(loc="lower right")
    return _save(figure, path)


def plot_precision_recall(
    true_labels: NDArray[Any], scores: Mapping[str, NDArray[Any]], path: Path
) -> Path:
    """Precision-recall curve of each named scorer on the test rows."""
    figure = Figure(figsize=(5, 4))
    axes = figure.add_subplot()
    for name, values in scores.items():
        precision, recall, _ = precision_recall_curve(true_labels, values)
        pr_auc = average_precision_score(true_labels, values)
        axes.plot(recall, precision, label=f"{name} (AP {pr_auc:.3f})")
    axes.axhline(true_labels.mean(), linestyle=":", color="grey")
    axes.set(xlabel="recall", ylabel="precision", title="Precision-recall (test)")
    axes.legend(loc="lower left")
    return _save(figure, path)


def plot_confusion(metrics: ClassificationMetrics, name: str, path: Path) -> Path:
    """Confusion matrix at the model's threshold."""
    matrix = np.array(
        [
            [metrics.true_negatives, metrics.false_positives],
            [metrics.false_negatives, metrics.true_positives],
        ]
    )
    figure = Figure(figsize=(4, 3.5))
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    for (row, column), value in np.ndenumerate(matrix):
        axes.text(column, row, f"{value:,}", ha="center", va="center")
    axes.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["normal", "anomaly"],
        yticklabels=["normal", "anomaly"],
        xlabel="predicted",
        ylabel="actual",
        title=f"{name} confusion (test)",
    )
    return _save(figure, path)


def plot_importance(features: Sequence[tuple[str, float]], name: str, path: Path) -> Path:
    """Horizontal bars of the most important features."""
    figure = Figure(figsize=(6, 0.3 * len(features) + 1.2))
    axes = figure.add_subplot()
    names = [feature for feature, _ in features][::-1]
    axes.barh(names, [value for _, value in features][::-1])
    axes.set(xlabel="share of importance", title=f"{name} top features")
    return _save(figure, path)


def write_report(
    path: Path,
    overview: Mapping[str, str],
    evaluations: Sequence[ModelEvaluation],
    baseline: ClassificationMetrics,
    plots: Sequence[Path],
    notes: Sequence[str],
) -> Path:
    """A self-contained HTML report; plots are referenced by file name beside it.

    Args:
        path: where to write the report.
        overview: label mix, label budget, data size and similar facts, as text.
        evaluations: one per candidate model.
        baseline: the Isolation Forest alone on the same test rows.
        plots: PNG files in the same folder as ``path``.
        notes: caveats worth reading (e.g. CatBoost trained on a sample).
    """
    columns = ["accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "false_positive_rate"]
    header = "".join(f"<th>{name}</th>" for name in ["model", *columns, "event recall", "gates"])
    rows = [
        _metrics_row(evaluation.kind, evaluation.metrics, columns)
        + f"<td>{_number(evaluation.event_recall)}</td>"
        + f"<td>{html.escape('; '.join(evaluation.gate_failures) or 'passed')}</td></tr>"
        for evaluation in evaluations
    ]
    rows.append(
        _metrics_row("isolation forest alone", baseline, columns) + "<td></td><td></td></tr>"
    )
    diagnostics = "".join(
        f"<tr><td>{html.escape(e.kind)}</td><td>{e.iterations}</td><td>{e.trained_rows:,}</td>"
        f"<td>{e.train_loss:.4f}</td><td>{e.validation_loss:.4f}</td><td>{e.loss_gap:+.4f}</td>"
        f"<td>{e.fit_seconds:.1f}</td><td>"
        + html.escape(", ".join(f"{name} ({value:.3f})" for name, value in e.top_features))
        + "</td></tr>"
        for e in evaluations
    )
    facts = "".join(
        f"<tr><th>{html.escape(key)}</th><td>{html.escape(value)}</td></tr>"
        for key, value in overview.items()
    )
    note_items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    images = "".join(f'<img src="{html.escape(plot.name)}" alt="{plot.stem}">' for plot in plots)
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Vigil training report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
        "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "img{max-width:32em;margin:0.5em}</style></head><body>"
        "<h1>Vigil training report</h1>"
        f"<h2>Data and labels</h2><table>{facts}</table>"
        "<h2>Held-out test set, against true labels</h2>"
        f"<table><tr>{header}</tr>{''.join(rows)}</table>"
        "<h2>Fit diagnostics</h2><table><tr><th>model</th><th>trees</th><th>rows</th>"
        "<th>train loss</th><th>validation loss</th><th>gap</th><th>fit s</th>"
        f"<th>top features</th></tr>{diagnostics}</table>"
        + (f"<h2>Notes</h2><ul>{note_items}</ul>" if notes else "")
        + f"<h2>Plots</h2>{images}</body></html>"
    )
    return path


def _metrics_row(name: str, metrics: ClassificationMetrics, columns: list[str]) -> str:
    cells = "".join(f"<td>{_number(getattr(metrics, column))}</td>" for column in columns)
    return f"<tr><td>{html.escape(name)}</td>{cells}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def choose_threshold(
    true_labels: NDArray[Any],
    scores: NDArray[Any],
    weights: NDArray[Any] | None = None,
    min_precision: float = 0.0,
) -> float:
    """The threshold that maximises F1 on labelled rows, preferring those meeting a precision.

    With ``weights`` (e.g. inverse inclusion probabilities of a stratified review sample) the
    counts are weighted, so the F1 estimated is that of the population the rows were drawn from.
    Among thresholds whose precision reaches ``min_precision`` the best F1 wins; when none
    does, the best F1 overall. The threshold lies halfway between the lowest flagged score
    and the next lower one, so nearby unseen rows fall on the side their neighbours did.

    Args:
        true_labels: 0/1 of the labelled rows (never the held-out test rows).
        scores: the scorer's output on those rows, higher = more anomalous.
        weights: one positive weight per row; None weighs every row 1.
        min_precision: the precision the chosen threshold should reach (e.g. the gate's).

    Raises:
        ValueError: no labelled anomaly, or lengths that differ.
    """
    if len(true_labels) != len(scores):
        raise ValueError(f"{len(true_labels)} labels but {len(scores)} scores")
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    positive = np.asarray(true_labels) == 1
    if not positive.any():
        raise ValueError("choosing a threshold needs at least one labelled anomaly")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    ranked = np.asarray(scores, dtype=np.float64)[order]
    tp = np.cumsum(w[order] * positive[order])
    fp = np.cumsum(w[order] * ~positive[order])
    # A threshold can only sit where the score changes: the last row of each run of ties.
    last = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / tp[-1]
    f1 = np.where(tp > 0, 2 * precision * recall / (precision + recall + 1e-300), 0.0)
    eligible = precision >= min_precision
    best = int(np.argmax(np.where(eligible, f1, -1.0))) if eligible.any() else int(np.argmax(f1))
    lowest_flagged = ranked[last[best]]
    below = ranked[last[best] + 1] if last[best] + 1 < len(ranked) else lowest_flagged - 1.0
    return float((lowest_flagged + below) / 2)
