"""``vigil evaluate``: the honest evaluation of Vigil on public labelled datasets."""

from training.real_evaluation.evaluate import (
    DEFAULT_LABEL_FRACTION,
    NothingEvaluatedError,
    evaluate_dataset,
)

__all__ = ["DEFAULT_LABEL_FRACTION", "NothingEvaluatedError", "evaluate_dataset"]
