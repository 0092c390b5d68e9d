"""Phase 2: the active-learning review queue, its files for reviewers, and reviewed labels.

The queue spends a label budget (a share of the trainable rows) on candidates stratified by
the unsupervised anomaly score: most of it on the likely anomalies and the rows near any
sensible threshold, the rest spread over the whole range so the answers can be weighted back
to every candidate; likely anomalies of critical services are asked about first. Reviewers
answer in a CSV or in Label Studio; :func:`import_reviews` checks the answers against the
exported queue and keeps them in the store for the next training run.
"""

import csv
import fnmatch
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from contracts.layout import LABELS_PREFIX
from contracts.store import ObjectStore
from training.config import ReviewConfig
from training.isolation import Bucket

QUEUE_PATH = f"{LABELS_PREFIX}/review_queue.parquet"
REVIEWS_PATH = f"{LABELS_PREFIX}/reviews.parquet"

REVIEW_LABELS = {"anomaly": 1, "normal": 0, "1": 1, "0": 0}
LABEL_NAMES = {1: "anomaly", 0: "normal"}
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
CONTEXT_SAMPLE_ROWS = 100_000

QUEUE_COLUMNS = ("row_id", "instance_id", "timestamp", "reason", "bucket", "score")
REVIEWS_SCHEMA = pa.schema(
    [
        pa.field("row_id", pa.string(), nullable=False),
        pa.field("instance_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
    ]
)

# Why a row is in the queue: a likely anomaly of a critical service, or the score stratum it
# was drawn from ("top 1%", "top 3%", ... "top 100%").
CRITICAL_ANOMALY = "critical_anomaly"
TOP_STRATUM_PREFIX = "top "

# Uncertain = not covered by a high-confidence pseudo-label: what labelling "everything
# uncertain" (the seed's baseline for its 80 % reduction) would cost.
UNCERTAIN_BUCKETS = (Bucket.MEDIUM_ANOMALY, Bucket.LOW_ANOMALY, Bucket.MEDIUM_NORMAL)

LABEL_STUDIO_CONFIG = """<View>
  <Header value="$instance_id at $timestamp: Isolation Forest score $score ($reason)"/>
  <Text name="row" value="$context"/>
  <Choices name="label" toName="row" choice="single" showInLine="true">
    <Choice value="anomaly"/>
    <Choice value="normal"/>
  </Choices>
</View>
"""


class ReviewImportError(ValueError):
    """A reviewed-label file that cannot be accepted; nothing was saved."""


class LabelBudget(BaseModel):
    """How many labels the queue asks for against labelling every uncertain row."""

    model_config = ConfigDict(extra="forbid")

    asked: int
    uncertain: int
    by_reason: dict[str, int]

    @property
    def reduction(self) -> float:
        """Share of labelling work saved (the seed's "80 % reduction")."""
        return 1.0 - self.asked / self.uncertain if self.uncertain else 0.0


@dataclass(frozen=True)
class ReviewFiles:
    """The files handed to reviewers."""

    csv_path: Path
    label_studio_tasks_path: Path
    label_studio_config_path: Path


@dataclass(frozen=True)
class ImportedReviews:
    """Reviewed labels read from a file, checked against the queue."""

    reviews: pl.DataFrame
    unanswered: int


def row_id_expr() -> pl.Expr:
    """``instance@YYYY-MM-DDTHH:MM:SSZ``: the id reviewers see for a feature row."""
    return pl.concat_str(
        [pl.col("instance_id"), pl.lit("@"), pl.col("timestamp").dt.strftime(TIMESTAMP_FORMAT)]
    )


def sample_review_queue(rows: pl.DataFrame, config: ReviewConfig, budget: int) -> pl.DataFrame:
    """Draw the rows a human should label: at most ``budget``, stratified by anomaly score.

    Every likely anomaly (top stratum) of a critical instance is asked about first; the rest
    of the budget goes to :func:`sample_within_budget` over the other candidates, so the
    answers can be weighted back to every candidate (column ``inclusion``).

    Args:
        rows: one row per candidate (trainable rows without a known label), in time order per
            instance, with columns instance_id, timestamp, score (the unsupervised anomaly
            score, higher = more anomalous) and bucket (the Isolation Forest's).
        config: critical services, seed.
        budget: the most rows to ask about.

    Returns:
        The queue: ``QUEUE_COLUMNS`` plus ``inclusion`` (the probability the row had of being
        asked), sorted by row_id.
    """
    scores = rows["score"].to_numpy()
    likely = np.zeros(len(scores), dtype=bool)
    if len(scores):
        likely = scores >= np.quantile(scores, 1 - STRATUM_RANK_SHARES[0])
    critical = np.flatnonzero(_matches_any(rows["instance_id"], config.critical_instances) & likely)
    critical = critical[: max(budget, 0)]
    others = np.setdiff1d(np.arange(rows.height), critical)
    drawn = sample_within_budget(scores[others], budget - len(critical), config.random_state)
    chosen = np.concatenate([critical, others[drawn.rows]])
    reason = [CRITICAL_ANOMALY] * len(critical) + [
        _stratum_name(rank) for rank in _rank_share(scores[others])[drawn.rows]
    ]
    inclusion = np.concatenate([np.ones(len(critical)), drawn.inclusion])
    queue: pl.DataFrame = (
        rows[chosen]
        .with_columns(
            row_id=row_id_expr(),
            reason=pl.Series(reason, dtype=pl.String),
            inclusion=pl.Series(inclusion, dtype=pl.Float64),
        )
        .select(*QUEUE_COLUMNS, "inclusion")
        .sort("row_id")
    )
    return queue


def _rank_share(scores: NDArray[Any]) -> NDArray[np.float64]:
    """Each score's share of candidates scoring at least as high (0 = the highest)."""
    rank = np.empty(len(scores), dtype=np.float64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(len(scores))
    return rank / max(len(scores), 1)


def _stratum_name(rank_share: float) -> str:
    upper = next(s for s in STRATUM_RANK_SHARES if rank_share < s or s == 1.0)
    return f"{TOP_STRATUM_PREFIX}{upper:.0%}"


def _matches_any(instance_ids: pl.Series, patterns: list[str]) -> NDArray[Any]:
    if not patterns:
        return np.zeros(len(instance_ids), dtype=bool)
    unique = instance_ids.unique().to_list()
    critical = [name for name in unique if any(fnmatch.fnmatch(name, p) for p in patterns)]
    return instance_ids.is_in(critical).to_numpy()


def label_budget(candidate_buckets: pl.Series, queue: pl.DataFrame) -> LabelBudget:
    """Compare the queue's size with labelling every uncertain candidate row."""
    uncertain = int(candidate_buckets.is_in([b.value for b in UNCERTAIN_BUCKETS]).sum())
    by_reason = {str(k): int(v) for k, v in queue["reason"].value_counts().iter_rows()}
    return LabelBudget(asked=queue.height, uncertain=uncertain, by_reason=by_reason)


def add_context(
    queue: pl.DataFrame, features: NDArray[Any], fleet: NDArray[Any], names: list[str]
) -> pl.DataFrame:
    """Add ``context``: the three features that deviate most from the fleet, for reviewers.

    Args:
        queue: the queue, in the same row order as ``features``.
        features: the queue rows' feature values.
        fleet: all rows' feature values (the median and spread come from a sample of them).
        names: feature names, in column order.
    """
    if queue.height == 0:
        return queue.with_columns(context=pl.lit("", dtype=pl.String))
    sample = fleet[:: max(1, len(fleet) // CONTEXT_SAMPLE_ROWS)]
    median = np.median(sample, axis=0)
    spread = np.median(np.abs(sample - median), axis=0) + 1e-9
    deviation = np.abs(features - median) / spread
    top = np.argsort(-deviation, axis=1)[:, :3]
    context = [
        ", ".join(f"{names[j]}={features[i, j]:.4g}" for j in top[i]) for i in range(len(top))
    ]
    return queue.with_columns(context=pl.Series(context, dtype=pl.String))


def write_review_files(queue: pl.DataFrame, out_dir: Path) -> ReviewFiles:
    """Write the queue as a CSV (fill the ``label`` column) and as a Label Studio import.

    Args:
        queue: the queue, optionally with a ``context`` column (see :func:`add_context`).
        out_dir: created if missing.

    Returns:
        The paths written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    printable = queue.with_columns(pl.col("timestamp").dt.strftime(TIMESTAMP_FORMAT))
    csv_path = out_dir / "review_queue.csv"
    printable.with_columns(label=pl.lit("", dtype=pl.String)).write_csv(csv_path)
    tasks = [{"data": row} for row in printable.to_dicts()]
    tasks_path = out_dir / "review_queue.label_studio.json"
    tasks_path.write_text(json.dumps(tasks, indent=1))
    config_path = out_dir / "label_studio_config.xml"
    config_path.write_text(LABEL_STUDIO_CONFIG)
    return ReviewFiles(csv_path, tasks_path, config_path)


def read_review_file(path: Path, queue: pl.DataFrame) -> ImportedReviews:
    """Read reviewed labels from a CSV or a Label Studio JSON / JSON-MIN export.

    Rows with no answer are counted and skipped. Labels are ``anomaly``/``normal`` (or 1/0).

    Args:
        path: ``.csv`` or ``.json``.
        queue: the exported queue the answers belong to.

    Returns:
        One review per answered row id, with instance_id, timestamp and label.

    Raises:
        ReviewImportError: unreadable file, missing column, unknown label value, row ids not
            in the queue, or one row id given two different labels.
    """
    try:
        if path.suffix.lower() == ".csv":
            answers = _answers_from_csv(path.read_text())
        elif path.suffix.lower() == ".json":
            answers = _answers_from_label_studio(json.loads(path.read_text()))
        else:
            raise ReviewImportError(f"{path}: expected a .csv or .json file")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as error:
        raise ReviewImportError(f"{path}: cannot read: {error}") from error
    except ReviewImportError as error:
        raise ReviewImportError(f"{path}: {error}") from error
    return _check_answers(path, answers, queue)


def _answers_from_csv(text: str) -> list[tuple[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    fields = reader.fieldnames or []
    missing = [name for name in ("row_id", "label") if name not in fields]
    if missing:
        raise ReviewImportError(f"missing column(s) {missing}; found {fields}")
    return [(row["row_id"] or "", row["label"] or "") for row in reader]


def _answers_from_label_studio(document: Any) -> list[tuple[str, str]]:
    if not isinstance(document, list):
        raise ReviewImportError("expected a Label Studio export: a JSON list of tasks")
    answers: list[tuple[str, str]] = []
    for task in document:
        if not isinstance(task, dict):
            raise ReviewImportError(f"task is not an object: {task!r:.80}")
        if "data" in task:
            row_id = str(task["data"].get("row_id", ""))
            choices = _choices(task) or [""]
            answers.extend((row_id, choice) for choice in choices)
        else:  # JSON-MIN export: data fields and the choice side by side
            answers.append((str(task.get("row_id", "")), str(task.get("label", ""))))
    return answers


def _choices(task: dict[str, Any]) -> list[str]:
    return [
        choice
        for annotation in task.get("annotations", [])
        if not annotation.get("was_cancelled", False)
        for result in annotation.get("result", [])
        if result.get("type") == "choices" and result.get("from_name") == "label"
        for choice in result.get("value", {}).get("choices", [])
    ]


def _check_answers(
    path: Path, answers: list[tuple[str, str]], queue: pl.DataFrame
) -> ImportedReviews:
    if any(not row_id for row_id, _ in answers):
        raise ReviewImportError(f"{path}: a row has no row_id")
    answered = [(row_id, label.strip().lower()) for row_id, label in answers if label.strip()]
    bad_values = sorted({label for _, label in answered if label not in REVIEW_LABELS})
    if bad_values:
        raise ReviewImportError(
            f"{path}: unknown label value(s) {bad_values}; use 'anomaly' or 'normal'"
        )
    known = set(queue["row_id"].to_list())
    unknown = sorted({row_id for row_id, _ in answers} - known)
    if unknown:
        raise ReviewImportError(
            f"{path}: {len(unknown)} row id(s) not in the exported review queue, e.g. {unknown[:5]}"
        )
    labels: dict[str, set[int]] = {}
    for row_id, label in answered:
        labels.setdefault(row_id, set()).add(REVIEW_LABELS[label])
    conflicts = sorted(row_id for row_id, values in labels.items() if len(values) > 1)
    if conflicts:
        raise ReviewImportError(
            f"{path}: {len(conflicts)} row id(s) labelled both anomaly and normal, "
            f"e.g. {conflicts[:5]}"
        )
    answers_frame = pl.DataFrame(
        {"row_id": list(labels), "label": [values.pop() for values in labels.values()]},
        schema={"row_id": pl.String, "label": pl.Int8},
    )
    reviews = queue.select("row_id", "instance_id", "timestamp").join(
        answers_frame, on="row_id", how="inner"
    )
    unanswered = len({row_id for row_id, _ in answers} - set(labels))
    return ImportedReviews(reviews.sort("row_id"), unanswered)


def save_queue(store: ObjectStore, queue: pl.DataFrame) -> None:
    """Keep the exported queue in the store so imports can be checked against it."""
    store.write_table(QUEUE_PATH, queue.select(QUEUE_COLUMNS).to_arrow())


def load_queue(store: ObjectStore) -> pl.DataFrame:
    """The last exported queue; raises ReviewImportError when none was exported."""
    if not store.exists(QUEUE_PATH):
        raise ReviewImportError("no review queue in the store: run `vigil review export` first")
    return pl.from_arrow(store.read_table(QUEUE_PATH))  # type: ignore[return-value]


def load_reviews(store: ObjectStore) -> pl.DataFrame:
    """Every reviewed label imported so far (row_id, instance_id, timestamp, label)."""
    if not store.exists(REVIEWS_PATH):
        return pl.from_arrow(REVIEWS_SCHEMA.empty_table())  # type: ignore[return-value]
    return pl.from_arrow(store.read_table(REVIEWS_PATH))  # type: ignore[return-value]


def save_reviews(store: ObjectStore, new: pl.DataFrame, overwrite: bool = False) -> int:
    """Merge reviewed labels into the store's reviews.

    Args:
        store: where the reviews live.
        new: reviews to add (row_id, instance_id, timestamp, label).
        overwrite: let a new label replace an earlier, different one for the same row.

    Returns:
        The number of reviewed rows in the store afterwards.

    Raises:
        ReviewImportError: a row was reviewed before with the other label and ``overwrite``
            is off; the store is left as it was.
    """
    existing = load_reviews(store)
    clashes = existing.join(new, on="row_id", suffix="_new").filter(
        pl.col("label") != pl.col("label_new")
    )
    if clashes.height and not overwrite:
        raise ReviewImportError(
            f"{clashes.height} row id(s) were reviewed before with the other label, "
            f"e.g. {clashes['row_id'].head(5).to_list()}; import with overwrite to correct them"
        )
    merged = pl.concat(
        [existing.join(new, on="row_id", how="anti"), new.select(existing.columns)],
        how="vertical",
    ).sort("row_id")
    store.write_table(REVIEWS_PATH, merged.to_arrow().cast(REVIEWS_SCHEMA))
    return merged.height


def import_reviews(store: ObjectStore, path: Path, overwrite: bool = False) -> ImportedReviews:
    """``vigil review import``: check a reviewed file against the exported queue and save it.

    Args:
        store: holds the exported queue and receives the reviews.
        path: a CSV or a Label Studio JSON / JSON-MIN export.
        overwrite: let new answers replace different earlier ones.

    Returns:
        The reviews accepted from the file and how many queue rows it left unanswered.

    Raises:
        ReviewImportError: see :func:`read_review_file` and :func:`save_reviews`.
    """
    imported = read_review_file(path, load_queue(store))
    save_reviews(store, imported.reviews, overwrite=overwrite)
    return imported


def simulate_reviews(queue: pl.DataFrame, hidden_labels: pl.DataFrame) -> pl.DataFrame:
    """A reviewer who answers from labels the run keeps hidden (demo and evaluation).

    Args:
        queue: the rows asked about.
        hidden_labels: row_id and label (null where even the store does not know).

    Returns:
        Reviews for the queue rows whose label is known.
    """
    return (
        queue.select("row_id", "instance_id", "timestamp")
        .join(hidden_labels.select("row_id", "label"), on="row_id", how="inner")
        .filter(pl.col("label").is_not_null())
        .with_columns(pl.col("label").cast(pl.Int8))
    )


# Budgeted queue: candidates ranked by anomaly score are cut into strata
# by rank share, and each stratum gets a share of the budget. The top strata hold the likely
# anomalies and the uncertain rows near any sensible threshold; the rest keeps the sample
# representative. Inclusion probabilities are known, so estimates from the answers can be
# weighted back to every candidate (see training.evaluation.choose_threshold).
STRATUM_RANK_SHARES = (0.01, 0.03, 0.1, 0.3, 1.0)
STRATUM_BUDGET_SHARES = (0.3, 0.25, 0.2, 0.15, 0.1)


@dataclass(frozen=True)
class BudgetedQueue:
    """Rows the queue asks about and the probability each had of being asked."""

    rows: NDArray[np.int64]
    inclusion: NDArray[np.float64]


def sample_within_budget(
    scores: NDArray[Any],
    budget: int,
    seed: int,
    rank_shares: tuple[float, ...] = STRATUM_RANK_SHARES,
    budget_shares: tuple[float, ...] = STRATUM_BUDGET_SHARES,
) -> BudgetedQueue:
    """Draw at most ``budget`` candidates, stratified by score rank, spread out in time.

    Within a stratum rows are taken at even steps through the candidates' order (time order
    for a series) from a random start, so one long incident cannot take a stratum's budget.
    A stratum smaller than its share is taken whole and the rest moves to the next one.

    Args:
        scores: one anomaly score per candidate (higher = more anomalous), in time order.
        budget: the most rows to ask about.
        seed: random start of each stratum's systematic sample.
        rank_shares: cumulative share of candidates, by descending score, ending each stratum.
        budget_shares: share of the budget for each stratum (same length, sums to 1).

    Returns:
        Sorted candidate positions and their inclusion probabilities.
    """
    if len(rank_shares) != len(budget_shares) or not np.isclose(sum(budget_shares), 1.0):
        raise ValueError("rank_shares and budget_shares must pair up and budget_shares sum to 1")
    count = len(scores)
    budget = min(max(budget, 0), count)
    rank_of = np.empty(count, dtype=np.int64)
    rank_of[np.argsort(-np.asarray(scores), kind="stable")] = np.arange(count)
    edges = np.concatenate(([0], np.ceil(np.asarray(rank_shares) * count).astype(np.int64)))
    rng = np.random.default_rng(seed)
    chosen, inclusion, carried = [], [], 0.0
    for stratum, share in enumerate(budget_shares):
        members = np.flatnonzero((rank_of >= edges[stratum]) & (rank_of < edges[stratum + 1]))
        wanted = share * budget + carried
        take = min(len(members), int(np.floor(wanted + 1e-9)))
        carried = wanted - take
        if take == 0:
            continue
        step = len(members) / take
        picks = members[(rng.uniform(0, step) + step * np.arange(take)).astype(np.int64)]
        chosen.append(picks)
        inclusion.append(np.full(take, take / len(members)))
    if not chosen:
        return BudgetedQueue(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))
    rows, probabilities = np.concatenate(chosen), np.concatenate(inclusion)
    order = np.argsort(rows)
    return BudgetedQueue(rows[order], probabilities[order])
