"""``vigil rag evaluate``: the explanation service measured on the small set and on SMD / ASD.

This sits on top of the parts: the dataset path fits ``vigil evaluate``'s detector
(``training.real_evaluation``) and explains its incidents with ``rag``. Retrieval always runs
on a temporary Qdrant local-mode collection holding the configured runbooks, so an evaluation
never writes to the service's collection; the LLM is the one at ``llm_url``, or the local
llama.cpp server started for the run.
"""

import contextlib
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from rich.table import Table

from contracts.explanation import ExplainRequest, FeatureContribution
from rag.analysis import detect_analysis_type
from rag.embeddings import load_embedder
from rag.evaluation import (
    EVAL_SET_PATH,
    answer_rates,
    ask_llm,
    evaluate_set,
    judge_reply,
    load_eval_set,
    retrieve,
    subject_terms,
)
from rag.explainer import Explainer
from rag.indexing import index_knowledge
from rag.interpretation import HIT_RATE_PERCENTS, hit_rates, mean_rates, random_hit_rate
from rag.knowledge_base import open_knowledge_base
from rag.llm import make_llm_client
from rag.llm_server import HEALTH_PATH, llama_server_command
from rag.settings import RagSettings
from training.real_evaluation.attribution import (
    EntityAttribution,
    IncidentAttribution,
    attribute_dataset,
)
from vigil.processes import free_port, start_server, wait_for_ok

Progress = Callable[[str], None]
NAMED_METRICS = (
    "the metrics of the model's exact TreeSHAP contributions (xgboost pred_contribs) over the "
    "incident's held-out rows, strongest first; the LLM does not change them"
)


def evaluate_small_set(
    settings: RagSettings,
    set_path: Path = EVAL_SET_PATH,
    llm_url: str | None = None,
    use_llm: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run ``rag.evaluation.evaluate_set`` on the set at ``set_path``."""
    eval_set = load_eval_set(set_path)
    with _explainer(settings, llm_url, use_llm) as explainer:
        document = evaluate_set(eval_set, explainer, use_llm, progress)
    return {"set": str(set_path), **document}


def evaluate_dataset_explanations(
    settings: RagSettings,
    name: Literal["smd", "asd"],
    path: Path,
    entities: list[str] | None = None,
    label_fraction: float = 0.02,
    work_dir: Path | None = None,
    llm_url: str | None = None,
    use_llm: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """HitRate@100 % / @150 % of the named metrics on every labelled held-out incident.

    Args:
        settings: where the runbooks are and which LLM model name to ask for.
        name: smd or asd.
        path: the dataset folder as published.
        entities: the entities to explain (None: all).
        label_fraction: the review budget of the detector, as in ``vigil evaluate``.
        work_dir: entity stores kept and reused (``vigil evaluate``'s layout).
        llm_url: OpenAI-compatible base URL; None starts the local LLM server.
        use_llm: also ask the LLM about each incident and check its answer.
        progress: called with a short message per entity and per LLM call.

    Returns:
        ``{"dataset", ..., "entities": {entity: summary with per_incident rows}, "overall":
        means over entities, "pooled": means over all incidents}``.
    """
    attributions = attribute_dataset(name, path, entities, label_fraction, work_dir, progress)
    answers: dict[tuple[str, int], dict[str, Any]] = {}
    llm: dict[str, Any] = {"used": False, "base_url": None, "model": None}
    if use_llm:
        with _explainer(settings, llm_url, use_llm) as explainer:
            names = [entity.entity for entity in attributions]
            for entity in attributions:
                for number, incident in enumerate(entity.incidents):
                    if progress is not None:
                        progress(f"LLM: {entity.entity} incident {number + 1}")
                    answers[entity.entity, number] = _llm_answer(explainer, entity, incident, names)
            llm = {
                "used": True,
                "base_url": str(explainer.llm.client.base_url),
                "model": explainer.llm.model,
            }
    summaries = {
        entity.entity: _entity_summary(entity, answers, use_llm) for entity in attributions
    }
    rows = [row for summary in summaries.values() for row in summary["per_incident"]]
    return {
        "evaluation": f"explanations on {name}",
        "dataset": name,
        "label_fraction": label_fraction,
        "named_metrics": NAMED_METRICS,
        "hit_rate": "share of the true metrics among the first floor(P% x |true|) named",
        "llm": llm,
        "entities": summaries,
        "overall": _mean_over_entities(list(summaries.values())),
        "pooled": {"incidents": len(rows), **_incident_summary(rows, use_llm)},
    }


def small_set_table(document: dict[str, Any]) -> Table:
    """The small-set document as a table: one row per incident type and the total."""
    table = Table(
        "incident type",
        "cases",
        "hit@5",
        "type accuracy",
        "valid JSON",
        "fields",
        "shown",
        "grounded",
    )
    groups = {**document["by_incident_type"], "all": document}
    for name, rates in groups.items():
        counted = sum(1 for row in document["per_case"] if row["incident_type"] == name)
        answers = rates["answers"] or {}
        table.add_row(
            name,
            str(counted if name != "all" else document["cases"]),
            _rate(rates["retrieval"]["hit_at_k"]),
            _rate(rates["analysis_type"]["accuracy"]),
            _rate(answers.get("valid_json_rate")),
            _rate(answers.get("fields_present_rate")),
            _rate(answers.get("usable_rate")),
            _rate(answers.get("groundedness_rate")),
        )
    return table


def dataset_table(document: dict[str, Any]) -> Table:
    """The dataset document as a table: HitRate per entity of the model, deviation, random."""
    table = Table(title="HitRate of the named metrics: model / deviation / random ranking")
    table.add_column("entity", no_wrap=True)
    for header in ("incidents", "explained", "kind acc."):
        table.add_column(header)
    sources = {"model": "model", "deviation": "dev.", "random": "rand."}
    for percent in HIT_RATE_PERCENTS:
        for label in sources.values():
            table.add_column(f"@{percent} {label}")
    rows = [*document["entities"].items(), ("mean", document["overall"])]
    for name, summary in rows:
        table.add_row(
            name,
            str(summary["incidents"]),
            summary.get("explained", ""),
            _rate(summary["kind_accuracy"]),
            *(
                _rate(summary[source][f"hit_rate@{percent}%"])
                for percent in HIT_RATE_PERCENTS
                for source in sources
            ),
        )
    return table


@contextlib.contextmanager
def _explainer(settings: RagSettings, llm_url: str | None, use_llm: bool) -> Iterator[Explainer]:
    """An explainer over a temporary collection of the runbooks, and its LLM (if used)."""
    with tempfile.TemporaryDirectory(prefix="vigil-rag-evaluate-") as scratch:
        scratch_path = Path(scratch)
        with _llm_base_url(llm_url if use_llm else settings.llm_base_url, scratch_path) as url:
            local = settings.model_copy(
                update={
                    "qdrant_url": None,
                    "qdrant_path": scratch_path / "qdrant",
                    "llm_base_url": url,
                }
            )
            embedder = load_embedder(local.embedding_model_path, local.embedding_batch_size)
            kb = open_knowledge_base(local)
            try:
                index_knowledge(kb, embedder, runbooks_path=local.runbooks_path)
                yield Explainer(local, embedder, kb, make_llm_client(local))
            finally:
                kb.client.close()


@contextlib.contextmanager
def _llm_base_url(url: str | None, log_path: Path) -> Iterator[str]:
    """``url``, or the base URL of a local llama.cpp server started (and stopped) here."""
    if url is not None:
        yield url
        return
    port = free_port()
    server = start_server(
        "llama-server",
        llama_server_command(port),
        f"http://127.0.0.1:{port}",
        HEALTH_PATH,
        log_path,
        timeout=120,
    )
    try:
        wait_for_ok(server.url + HEALTH_PATH)  # 503 while the model loads
        yield f"{server.url}/v1"
    finally:
        server.stop()


def _llm_answer(
    explainer: Explainer,
    entity: EntityAttribution,
    incident: IncidentAttribution,
    instances: list[str],
) -> dict[str, Any]:
    request = ExplainRequest(
        instance_id=entity.entity,
        window_start=incident.start,
        window_end=incident.end,
        score=incident.score,
        model=f"xgboost ({entity.explained})",
        top_features=[
            FeatureContribution(
                name=f.name, value=f.value, baseline=f.baseline, contribution=f.contribution
            )
            for f in incident.top_features
        ],
    )
    detected = detect_analysis_type(request.top_features, request.log_lines)
    retrieved = retrieve(explainer, request, detected)
    reply, seconds, error = ask_llm(explainer, request, detected, retrieved)
    top_metric = incident.model_ranking[0] if incident.model_ranking else None
    terms = subject_terms(request, detected, top_metric=top_metric)
    check = judge_reply(reply, request, terms, instances, seconds)
    return {"analysis_type": detected, **asdict(check), "grounded": check.grounded, "error": error}


def _entity_summary(
    entity: EntityAttribution, answers: dict[tuple[str, int], dict[str, Any]], use_llm: bool
) -> dict[str, Any]:
    rows = []
    for number, incident in enumerate(entity.incidents):
        k = max(HIT_RATE_PERCENTS) * len(set(incident.true_metrics)) // 100
        rows.append(
            {
                "start": incident.start.isoformat(),
                "end": incident.end.isoformat(),
                "rows": incident.rows,
                "score": round(incident.score, 4),
                "true_metrics": incident.true_metrics,
                "named_metrics": incident.model_ranking[:k],
                "model": hit_rates(incident.true_metrics, incident.model_ranking),
                "deviation": hit_rates(incident.true_metrics, incident.deviation_ranking),
                "random": _random_rates(len(set(incident.true_metrics)), len(entity.metrics)),
                "true_type": incident.true_type,
                "kind": incident.kind,
                "top_features": [f.name for f in incident.top_features],
                "answer": answers.get((entity.entity, number)),
            }
        )
    return {
        "explained": entity.explained,
        "incidents": len(rows),
        "incidents_without_truth": entity.without_truth,
        **_incident_summary(rows, use_llm),
        "per_incident": rows,
    }


def _incident_summary(rows: list[dict[str, Any]], use_llm: bool) -> dict[str, Any]:
    typed = [row for row in rows if row["true_type"] != "unknown"]
    counts = Counter(row["true_type"] for row in typed)
    summary: dict[str, Any] = {
        source: mean_rates([row[source] for row in rows])
        for source in ("model", "deviation", "random")
    }
    # Overlapping published segments of several types are one incident of all of them
    # ("metric+temporal"): naming any of its types is right.
    summary["kind_accuracy"] = (
        sum(row["kind"] in row["true_type"].split("+") for row in typed) / len(typed)
        if typed
        else None
    )
    # "always the most common type", measured on the same incidents: the bar to beat
    summary["kind_majority_baseline"] = counts.most_common(1)[0][1] / len(typed) if typed else None
    answered = [row["answer"] for row in rows if row["answer"] is not None]
    summary["answers"] = answer_rates(answered) if use_llm and answered else None
    return summary


def _mean_over_entities(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return sum(present) / len(present) if present else None

    with_incidents = [s for s in summaries if s["incidents"]]
    overall: dict[str, Any] = {"incidents": sum(s["incidents"] for s in summaries)}
    for source in ("model", "deviation", "random"):
        overall[source] = {
            key: mean([s[source][key] for s in with_incidents])
            for key in (f"hit_rate@{p}%" for p in HIT_RATE_PERCENTS)
        }
    # Kind figures pool every incident of the dataset: the baseline is one constant answer for
    # the whole dataset (its most common kind), not each entity's own most common kind, which
    # nobody could know in advance.
    pooled = _incident_summary([row for s in summaries for row in s["per_incident"]], False)
    overall["kind_accuracy"] = pooled["kind_accuracy"]
    overall["kind_majority_baseline"] = pooled["kind_majority_baseline"]
    return overall


def _random_rates(truth_count: int, metric_count: int) -> dict[str, float]:
    return {
        f"hit_rate@{p}%": random_hit_rate(truth_count, metric_count, p) for p in HIT_RATE_PERCENTS
    }


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
