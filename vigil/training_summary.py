"""The table ``vigil train`` (and ``vigil demo``) prints at the end of a training run."""

from rich.table import Table

from training.run_directory import TrainingSummary, cross_validation_text


def training_summary_table(summary: TrainingSummary) -> Table:
    """The end-of-run table: test metrics per model, labels, budget, registration."""
    table = Table(title=f"vigil train — {summary.dataset} ({summary.rows:,} rows)")
    for column in ("model", "precision", "recall", "f1", "pr_auc", "event recall", "gates"):
        table.add_column(column)
    for kind, evaluation in summary.evaluations.items():
        m = evaluation.metrics
        table.add_row(
            kind,
            f"{m.precision:.3f}",
            f"{m.recall:.3f}",
            f"{m.f1:.3f}",
            "n/a" if m.pr_auc is None else f"{m.pr_auc:.3f}",
            "n/a" if evaluation.event_recall is None else f"{evaluation.event_recall:.3f}",
            "passed" if evaluation.passed_gates else "; ".join(evaluation.gate_failures),
        )
    base = summary.isolation_forest
    pr_auc = "n/a" if base.pr_auc is None else f"{base.pr_auc:.3f}"
    table.add_row(
        "isolation forest",
        f"{base.precision:.3f}",
        f"{base.recall:.3f}",
        f"{base.f1:.3f}",
        pr_auc,
        "",
        "",
    )
    budget = summary.label_budget
    cross_validation = cross_validation_text(summary)
    table.caption = (
        f"labels asked {budget.asked:,} vs {budget.uncertain:,} uncertain "
        f"({budget.reduction:.0%} less); "
        + (f"cross-validation: {cross_validation}; " if cross_validation else "")
        + (
            f"registered: {summary.registration.decision}"
            if summary.registration
            else f"not registered: {summary.registration_error or 'no tracking URI'}"
        )
    )
    return table
