"""The quality gates: a model must pass them on the held-out test rows to receive an alias."""

from training.config import GatesConfig
from training.evaluation import ClassificationMetrics, ModelEvaluation


def gate_failures(metrics: ClassificationMetrics, gates: GatesConfig) -> list[str]:
    """Why a model may not receive an alias; empty when it passes every gate."""
    failures = []
    if not metrics.f1 > gates.min_f1:
        failures.append(f"f1 {metrics.f1:.3f} <= {gates.min_f1}")
    if not metrics.precision > gates.min_precision:
        failures.append(f"precision {metrics.precision:.3f} <= {gates.min_precision}")
    return failures


def gate_verdict(evaluation: ModelEvaluation) -> str:
    """The verdict registration tags a model version with: passed, or why it failed."""
    return "passed" if evaluation.passed_gates else "failed: " + "; ".join(evaluation.gate_failures)
