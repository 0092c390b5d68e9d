"""Known labels revealed on eligible rows only, and which label source wins."""

import numpy as np
import polars as pl

from training.pseudo_labels import assign_pseudo_labels, label_mix, reveal_known_labels


def test_known_labels_are_revealed_only_on_eligible_rows() -> None:
    true = pl.Series([1, 0, 0, 1, None, 0] * 100, dtype=pl.Int8)
    eligible = np.arange(600) < 480
    known = reveal_known_labels(true, eligible, 0.5, seed=3)
    revealed = known.is_not_null().to_numpy()
    assert not revealed[~eligible].any()
    assert revealed.sum() == round(0.5 * 400)  # 400 labelled eligible rows
    assert (known.filter(pl.Series(revealed)) == true.filter(pl.Series(revealed))).all()


def test_pseudo_labels_prefer_original_then_review_then_unsupervised() -> None:
    pseudo = assign_pseudo_labels(
        pl.Series([0, None, None, None, None], dtype=pl.Int8),
        pl.Series([1, 1, None, None, None], dtype=pl.Int8),
        pl.Series([1, 0, 1, 0, None], dtype=pl.Int8),
    )
    assert pseudo["train_label"].to_list() == [0, 1, 1, 0, None]
    assert pseudo["label_source"].to_list() == [
        "original",
        "review",
        "unsupervised",
        "unsupervised",
        None,
    ]
    mix = label_mix(pseudo)
    assert mix.anomalies == {"original": 0, "review": 1, "unsupervised": 1}
    assert mix.normals == {"original": 1, "review": 0, "unsupervised": 1}
    assert mix.unlabelled == 1
    assert mix.labelled == 4
