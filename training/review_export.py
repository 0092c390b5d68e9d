"""``vigil review export``: draw the review queue and write it for reviewers."""

from dataclasses import dataclass
from pathlib import Path

from contracts.store import ObjectStore
from training.config import TrainingConfig
from training.data import ROW_ID, load_training_data
from training.labelling import label_rows
from training.review_queue import (
    LabelBudget,
    ReviewFiles,
    add_context,
    load_reviews,
    save_queue,
    write_review_files,
)


@dataclass(frozen=True)
class ReviewExport:
    """What ``vigil review export`` wrote."""

    files: ReviewFiles
    budget: LabelBudget


def export_review(store: ObjectStore, config: TrainingConfig, out_dir: Path) -> ReviewExport:
    """``vigil review export``: draw the review queue and write it for reviewers.

    The queue is also kept in the store, so ``vigil review import`` can check answers
    against it.

    Args:
        store: features, labels and earlier reviews.
        config: the training config (forest, buckets, sampling fractions).
        out_dir: where the CSV and the Label Studio files go.
    """
    data = load_training_data(store)
    no_simulation = config.model_copy(
        update={"review": config.review.model_copy(update={"simulate_reviewer": False})}
    )
    labelled = label_rows(data, no_simulation, load_reviews(store))
    positions = labelled.queue.join(
        data.rows.select(ROW_ID).with_row_index("__position"),
        on=ROW_ID,
        how="left",
        maintain_order="left",
    )["__position"].to_numpy()
    queue = add_context(labelled.queue, data.features[positions], data.features, data.feature_names)
    save_queue(store, queue)
    return ReviewExport(write_review_files(queue, out_dir), labelled.budget)
