"""Detection on the simulated fleet with and without the log features, same protocol.

Run: ``.venv/bin/python -m bench.log_features [--instances 20] [--hours 24] [--seeds 0 1 2]
[--config training/configs/demo.yaml] [--variants all,no_templates,no_logs] [--json PATH]``.

For each seed the fleet simulator writes a store (its six incident types leave their log
signatures, see ``telemetry.simulator.incident_kinds``), the feature job builds the features, and
the training pipeline (``training.pipeline.train_and_write``: the detector, the review queue
answered by the simulated reviewer within the label budget, XGBoost and CatBoost, thresholds,
evaluation on the held-out test rows) runs once per variant on the same rows, true labels,
split and config:

- ``all``: every feature column of the contract;
- ``no_templates``: without ``contracts.features.LOG_TEMPLATE_COLUMNS`` (the log-template
  features: template slots, novel templates, rare-template ratio, error burst, entropy);
- ``no_logs``: without any log feature (the per-level counts, their sums and ratio too).

Prints the test rows' PR-AUC (average precision of the served score) per model and variant,
the means over seeds, and last ``log_features_pr_auc_gain: X``: the mean PR-AUC of ``all``
minus that of ``no_templates``, over both models and every seed.
"""

import argparse
import json
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import yaml

from contracts.features import (
    ERROR_RATIO,
    LOG_COUNT_COLUMNS,
    LOG_TEMPLATE_COLUMNS,
    SUM_WINDOW,
    SUMMED_LOG_COUNTS,
)
from contracts.store import ObjectStore
from telemetry.feature_job import build_features
from telemetry.simulator.config import SimulationConfig
from telemetry.simulator.simulation import write_simulation
from training.config import TrainingConfig
from training.data import TrainingData, load_training_data
from training.pipeline import train_and_write
from training.review_queue import load_reviews

LEVEL_FEATURES = (
    *LOG_COUNT_COLUMNS,
    *(f"{column}_sum_{SUM_WINDOW}" for column in SUMMED_LOG_COUNTS),
    ERROR_RATIO,
)
VARIANTS: dict[str, tuple[str, ...]] = {
    "all": (),
    "no_templates": LOG_TEMPLATE_COLUMNS,
    "no_logs": (*LEVEL_FEATURES, *LOG_TEMPLATE_COLUMNS),
}
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "training" / "configs" / "demo.yaml"


def without(data: TrainingData, dropped: tuple[str, ...]) -> TrainingData:
    """The same rows and labels without the ``dropped`` feature columns."""
    keep = [j for j, name in enumerate(data.feature_names) if name not in dropped]
    return TrainingData(
        data.rows,
        np.ascontiguousarray(data.features[:, keep]),
        [data.feature_names[j] for j in keep],
        data.dataset,
        data.metrics,
    )


def run_seed(
    instances: int, hours: int, seed: int, config: TrainingConfig, variants: list[str], work: Path
) -> dict[str, dict[str, float]]:
    """PR-AUC on the test rows per variant and model for one simulated fleet."""
    store = ObjectStore.from_uri(str(work / f"store-{seed}"))
    simulation = SimulationConfig(instances=instances, duration=timedelta(hours=hours), seed=seed)
    write_simulation(store, simulation)
    build_features(store)
    data = load_training_data(store)
    reviews = load_reviews(store)
    results: dict[str, dict[str, float]] = {}
    for variant in variants:
        started = time.perf_counter()
        summary, _ = train_and_write(
            without(data, VARIANTS[variant]), config, reviews, work / f"run-{seed}-{variant}"
        )
        results[variant] = {
            kind: float(evaluation.metrics.pr_auc or 0.0)
            for kind, evaluation in summary.evaluations.items()
        }
        print(
            f"seed {seed} {variant:>12}: {summary.features} features, PR-AUC "
            + ", ".join(f"{kind} {value:.3f}" for kind, value in results[variant].items())
            + f" ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if unknown := sorted(set(variants) - set(VARIANTS)) or "all" not in variants:
        parser.error(f"variants are among {list(VARIANTS)} and include all (got {unknown})")
    config = TrainingConfig.model_validate(yaml.safe_load(args.config.read_text()))
    print(
        f"{args.instances} instances x {args.hours} h, seeds {args.seeds}, config {args.config}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as work:
        per_seed = {
            seed: run_seed(args.instances, args.hours, seed, config, variants, Path(work))
            for seed in args.seeds
        }
    means = {
        variant: {
            kind: float(np.mean([per_seed[s][variant][kind] for s in args.seeds]))
            for kind in per_seed[args.seeds[0]][variant]
        }
        for variant in variants
    }
    for variant, by_kind in means.items():
        shown = ", ".join(f"{kind} {value:.3f}" for kind, value in by_kind.items())
        print(f"mean over seeds {variant:>12}: PR-AUC {shown}")
    baseline = "no_templates" if "no_templates" in variants else variants[-1]
    gain = float(np.mean(list(means["all"].values())) - np.mean(list(means[baseline].values())))
    if args.json is not None:
        document = {
            "instances": args.instances,
            "hours": args.hours,
            "per_seed": {str(seed): result for seed, result in per_seed.items()},
            "means": means,
            "gain_vs": baseline,
            "gain": gain,
        }
        args.json.write_text(json.dumps(document, indent=2))
    print(f"log_features_pr_auc_gain: {gain:.3f}")


if __name__ == "__main__":
    main()
