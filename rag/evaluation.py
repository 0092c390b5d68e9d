"""``vigil rag evaluate`` on the small evaluation set: retrieval, type detection, LLM answers.

Each case of the set is an anomaly (an ``/explain`` request built from a simulated incident)
with the runbook that should be retrieved and the analysis type it should get. A case runs the
explainer's own stages one by one, so each is measured on its own:

1. ``detect_analysis_type``: right or wrong against the expected type;
2. ``Explainer.retrieve`` with ``RETRIEVAL_K`` runbook sections: a hit when the expected
   runbook is among them (hit@5);
3. the prompt the service would send (the configured number of runbook sections) and one LLM
   completion, no retry: is the reply a JSON object (after the service's repairs: code
   fences, trailing text), does it have every field, would the service show it
   (``rag.answer_check``: substantial enough, no invented instance; otherwise it answers
   from the runbook), and is it grounded — it names the anomaly's type or its top feature,
   and cites no instance id that is not in the request.
"""

import re
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field

from contracts.explanation import AnalysisType, ExplainRequest
from contracts.features import feature_metrics, metric_slug
from contracts.telemetry import FLEET_METRICS
from rag.analysis import detect_analysis_type
from rag.answer_check import INSTANCE_ID, UnusableAnswerError, usable_answer
from rag.explainer import Explainer, Retrieved
from rag.llm import LLMAnswer, extract_json, parse_answer
from rag.prompts import SYSTEM_PROMPT, build_prompt

EVAL_SET_PATH = Path(__file__).with_name("eval_set.json")  # package data: installs read it
RETRIEVAL_K = 5
_NOT_WORD = re.compile(r"[^0-9a-z]+")


class EvalCase(BaseModel):
    """One anomaly of the evaluation set and what a good explanation of it retrieves."""

    model_config = ConfigDict(extra="forbid")

    id: str
    incident_type: str
    expected_runbook: str = Field(description="Runbook file (relative to the runbook folder).")
    expected_analysis_type: AnalysisType
    request: ExplainRequest


class EvalSet(BaseModel):
    """The committed evaluation set (``rag/eval_set.json``, package data)."""

    model_config = ConfigDict(extra="forbid")

    description: str
    generated_by: str
    cases: list[EvalCase] = Field(min_length=1)


def load_eval_set(path: Path) -> EvalSet:
    """Read and validate an evaluation set.

    Raises:
        ValueError: when the file is not a valid set (the message names the file).
    """
    try:
        return EvalSet.model_validate_json(path.read_bytes())
    except ValueError as error:
        raise ValueError(f"{path}: not a valid evaluation set: {error}") from error


@dataclass(frozen=True)
class AnswerCheck:
    """What one LLM reply is worth."""

    valid_json: bool
    fields_present: bool
    usable: bool  # the service would show it rather than its runbook answer
    names_subject: bool  # the anomaly's type or its top feature is named
    foreign_instances: list[str]  # instance ids cited that the request does not hold
    seconds: float

    @property
    def grounded(self) -> bool:
        return self.fields_present and self.names_subject and not self.foreign_instances


def subject_terms(
    request: ExplainRequest,
    analysis_type: AnalysisType,
    incident_type: str | None = None,
    top_metric: str | None = None,
) -> list[str]:
    """Words that name the anomaly: its type(s), its top feature and that feature's metric.

    "general" names nothing, so it does not count.
    """
    terms: list[str] = [analysis_type] if analysis_type != "general" else []
    if incident_type:
        terms.append(incident_type)
    if request.top_features:
        terms.append(request.top_features[0].name)
    if top_metric:
        terms += [top_metric, metric_slug(top_metric)]
    return terms


def judge_reply(
    reply: str,
    request: ExplainRequest,
    terms: Iterable[str],
    known_instances: Iterable[str] = (),
    seconds: float = 0.0,
) -> AnswerCheck:
    """Check one reply: JSON, fields, and groundedness against the request.

    Args:
        reply: the LLM's text.
        request: the anomaly the LLM was asked about.
        terms: words any of which names the anomaly (``subject_terms``).
        known_instances: other instance names of the fleet or dataset; naming one that is not
            in the request counts as a foreign citation, as does any EC2-style id.
        seconds: how long the LLM took.
    """
    try:
        valid_json = isinstance(extract_json(reply), dict)
    except ValueError:
        valid_json = False
    try:
        answer: LLMAnswer | None = parse_answer(reply)
    except ValueError:
        answer = None
    if answer is None:
        return AnswerCheck(valid_json, False, False, False, [], seconds)
    try:
        usable = bool(usable_answer(answer, request))
    except UnusableAnswerError:
        usable = False
    text = " ".join([answer.root_cause, answer.impact, *answer.actions, *answer.prevention])
    given = " ".join([request.instance_id, *request.log_lines]).lower()
    cited = {match.lower() for match in INSTANCE_ID.findall(text)}
    cited |= {name.lower() for name in known_instances if _names(text, name)}
    return AnswerCheck(
        valid_json=valid_json,
        fields_present=True,
        usable=usable,
        names_subject=any(_names(text, term) for term in terms if term),
        foreign_instances=sorted(name for name in cited if name not in given),
        seconds=seconds,
    )


def ask_llm(
    explainer: Explainer,
    request: ExplainRequest,
    analysis_type: AnalysisType,
    retrieved: Retrieved,
) -> tuple[str, float, str | None]:
    """The service's prompt for the request, one completion: ``(reply, seconds, error)``."""
    prompt = build_prompt(
        request,
        analysis_type,
        retrieved.history,
        retrieved.runbooks[: explainer.settings.top_k_runbooks],
    )
    started = time.perf_counter()
    try:
        reply, error = explainer.llm.complete(SYSTEM_PROMPT, prompt), None
    except (openai.APIError, ValueError) as failure:
        reply, error = "", f"{type(failure).__name__}: {failure}"
    return reply, time.perf_counter() - started, error


def retrieve(
    explainer: Explainer, request: ExplainRequest, analysis_type: AnalysisType
) -> Retrieved:
    """The explainer's retrieval, with at least ``RETRIEVAL_K`` runbook sections."""
    k = max(RETRIEVAL_K, explainer.settings.top_k_runbooks)
    widened = explainer.settings.model_copy(update={"top_k_runbooks": k})
    return Explainer(widened, explainer.embedder, explainer.kb, explainer.llm).retrieve(
        request, analysis_type
    )


def evaluate_set(
    eval_set: EvalSet,
    explainer: Explainer,
    use_llm: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run every case; the ``vigil rag evaluate`` document (rates, per type, per case)."""
    fleet_instances = {case.request.instance_id for case in eval_set.cases}
    owners = feature_metrics(FLEET_METRICS)
    cases = []
    for number, case in enumerate(eval_set.cases, start=1):
        if progress is not None:
            progress(f"{case.id} ({number}/{len(eval_set.cases)})")
        request = case.request
        detected = detect_analysis_type(request.top_features, request.log_lines)
        retrieved = retrieve(explainer, request, detected)
        documents = [item.document for item in retrieved.runbooks[:RETRIEVAL_K]]
        row: dict[str, Any] = {
            "id": case.id,
            "incident_type": case.incident_type,
            "expected_runbook": case.expected_runbook,
            "retrieved_runbooks": documents,
            "hit": case.expected_runbook in documents,
            "expected_analysis_type": case.expected_analysis_type,
            "analysis_type": detected,
            "type_correct": detected == case.expected_analysis_type,
            "answer": None,
        }
        if use_llm:
            reply, seconds, error = ask_llm(explainer, request, detected, retrieved)
            top = request.top_features[0].name if request.top_features else None
            terms = subject_terms(request, detected, case.incident_type, owners.get(top or ""))
            check = judge_reply(reply, request, terms, fleet_instances, seconds)
            row["answer"] = {**asdict(check), "grounded": check.grounded, "error": error}
        cases.append(row)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for row in cases:
        by_type.setdefault(row["incident_type"], []).append(row)
    llm = explainer.llm
    return {
        "evaluation": "explanations on the small evaluation set",
        "cases": len(cases),
        "llm": {
            "used": use_llm,
            "base_url": str(llm.client.base_url) if use_llm else None,
            "model": llm.model if use_llm else None,
        },
        **case_rates(cases),
        "by_incident_type": {name: case_rates(rows) for name, rows in sorted(by_type.items())},
        "per_case": cases,
    }


def case_rates(cases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """hit@k, type accuracy and (when the LLM ran) the answer rates over ``cases``."""
    rates: dict[str, Any] = {
        "retrieval": {"k": RETRIEVAL_K, "hit_at_k": _share(row["hit"] for row in cases)},
        "analysis_type": {"accuracy": _share(row["type_correct"] for row in cases)},
    }
    answers = [row["answer"] for row in cases if row["answer"] is not None]
    rates["answers"] = answer_rates(answers) if answers else None
    return rates


def answer_rates(answers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Shares of valid, complete and grounded answers, and the LLM's median seconds."""
    return {
        "valid_json_rate": _share(a["valid_json"] for a in answers),
        "fields_present_rate": _share(a["fields_present"] for a in answers),
        "usable_rate": _share(a["usable"] for a in answers),
        "names_subject_rate": _share(a["names_subject"] for a in answers),
        "foreign_instance_rate": _share(bool(a["foreign_instances"]) for a in answers),
        "groundedness_rate": _share(a["grounded"] for a in answers),
        "llm_seconds_p50": statistics.median(a["seconds"] for a in answers),
    }


def _share(flags: Iterable[bool]) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else 0.0


def _names(text: str, term: str) -> bool:
    """Whether ``text`` holds ``term`` as whole words, whatever the case and separators
    (``memory_utilization`` matches "Memory utilization", ``so`` does not match "also")."""
    return f" {_words(term)} " in f" {_words(text)} "


def _words(text: str) -> str:
    return _NOT_WORD.sub(" ", text.lower()).strip()
