"""``vigil review export``: the queue written as CSV and Label Studio files, labels or not."""

import csv
import json
from pathlib import Path

from contracts.layout import INCIDENTS_PATH
from contracts.store import ObjectStore
from tests.training.conftest import small_config, write_fleet_store
from training.review_export import export_review
from training.review_queue import load_queue


def test_export_writes_csv_label_studio_tasks_and_config(
    exported: tuple[ObjectStore, Path],
) -> None:
    store, out = exported
    queue = load_queue(store)
    assert queue.height > 0
    with (out / "review_queue.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["row_id"] for row in rows] == queue["row_id"].to_list()
    assert all(row["label"] == "" and row["context"] for row in rows)
    tasks = json.loads((out / "review_queue.label_studio.json").read_text())
    assert [task["data"]["row_id"] for task in tasks] == queue["row_id"].to_list()
    config = (out / "label_studio_config.xml").read_text()
    assert '<Choices name="label"' in config
    assert '<Choice value="anomaly"/>' in config


def test_an_unlabelled_store_can_still_be_reviewed(tmp_path: Path) -> None:
    # Review is how labels start: exporting must not need any label in the store.
    store = write_fleet_store(tmp_path / "store")
    store.delete(INCIDENTS_PATH)
    export = export_review(store, small_config(), tmp_path / "review")
    assert export.budget.asked == load_queue(store).height > 0
