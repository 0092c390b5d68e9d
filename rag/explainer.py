"""The explanation pipeline: analysis type → retrieval → prompt → LLM, with fallbacks.

Fallbacks (each answer flagged ``degraded`` with the reason):

- Qdrant down, or the collection missing or empty → the analysis type's generic answer.
- LLM down, timed out, or no valid answer after the retry → the retrieved context and the
  remediation / prevention steps of the best-matching runbook.
- A valid answer too thin to act on, or citing an instance it was not given
  (``rag.answer_check``) → the same retrieval answer. Not retried: a model that answered
  "1" once rarely does better at the same prompt, and the caller already waited.

The request's log evidence (the window's new and spiking log templates) is part of every
answer: it feeds the analysis type and the retrieval query, the prompt shows it, and both
fallback answers name the most telling templates in their root cause.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from contracts.explanation import (
    AnalysisType,
    ContextItem,
    ExplainRequest,
    ExplainResponse,
    LogEvidence,
)
from rag.analysis import detect_analysis_type
from rag.answer_check import UnusableAnswerError, usable_answer
from rag.chunking import list_items
from rag.embeddings import Embedder
from rag.knowledge_base import Hit, KnowledgeBase
from rag.llm import LLMClient, LLMError, LLMReplyError
from rag.prompts import SYSTEM_PROMPT, TEMPLATES, build_prompt, describe_evidence
from rag.settings import RagSettings

logger = logging.getLogger(__name__)

_QUERY_LOG_LINES = 10
_QUERY_EVIDENCE = 5
_INCIDENTS_RETRIEVED = 2
_MAX_STEPS = 6
_ANSWER_EVIDENCE = 3
# Log points are per template and instance-window, so a template that lasted an hour is a
# dozen points with one text: searches ask for this many times more and keep one of each text.
_LOG_OVERFETCH = 4


class KnowledgeUnavailableError(Exception):
    """Qdrant cannot be searched, or holds nothing to search."""


@dataclass(frozen=True)
class Retrieved:
    """What retrieval found for one anomaly, best first within each list."""

    history: list[ContextItem]  # log lines and past incidents
    runbooks: list[ContextItem]


@dataclass
class Explainer:
    """Everything /explain needs, built once per process."""

    settings: RagSettings
    embedder: Embedder
    kb: KnowledgeBase
    llm: LLMClient

    def explain(self, request: ExplainRequest) -> ExplainResponse:
        analysis_type = detect_analysis_type(request.top_features, _log_text(request))
        try:
            retrieved = self.retrieve(request, analysis_type)
        except KnowledgeUnavailableError as error:
            return generic_answer(
                analysis_type,
                f"knowledge base unavailable: {error}",
                evidence=request.log_evidence,
            )
        prompt = build_prompt(request, analysis_type, retrieved.history, retrieved.runbooks)
        context = retrieved.history + retrieved.runbooks
        try:
            answer = usable_answer(self.llm.explain(SYSTEM_PROMPT, prompt), request)
        except (LLMReplyError, UnusableAnswerError) as error:
            logger.warning("LLM answer unusable, answering from retrieval only: %s", error)
            reason = f"LLM answer unusable: {error}"
            return self._retrieval_answer(request, analysis_type, retrieved, reason)
        except LLMError as error:
            logger.warning("LLM failed, answering from retrieval only: %s", error)
            return self._retrieval_answer(request, analysis_type, retrieved, f"LLM failed: {error}")
        return ExplainResponse(
            root_cause=answer.root_cause,
            impact=answer.impact,
            actions=answer.actions,
            prevention=answer.prevention,
            analysis_type=analysis_type,
            context=context,
            degraded=False,
        )

    def retrieve(self, request: ExplainRequest, analysis_type: AnalysisType) -> Retrieved:
        """Similar logs (same service and time window preferred), incidents and runbooks.

        Raises:
            KnowledgeUnavailableError: when Qdrant fails or the collection is missing or empty.
        """
        try:
            if self.kb.count() == 0:
                raise KnowledgeUnavailableError(
                    f"collection {self.kb.collection!r} is empty or missing"
                )
            vector = self.embedder.encode([_query_text(request, analysis_type)])[0]
            since = request.window_start - timedelta(hours=self.settings.log_window_hours)
            until = request.window_end
            k = self.settings.top_k_logs
            logs: list[Hit] = []
            if request.service and k:
                logs = self.kb.search(
                    vector,
                    ["log"],
                    k * _LOG_OVERFETCH,
                    service=request.service,
                    since=since,
                    until=until,
                )
            logs = _distinct(logs)[:k]
            if len(logs) < k:
                wider = self.kb.search(
                    vector, ["log"], k * _LOG_OVERFETCH, since=since, until=until
                )
                logs = _distinct(logs + wider)
            incidents = self.kb.search(vector, ["incident"], _INCIDENTS_RETRIEVED)
            runbooks = self.kb.search(vector, ["runbook"], self.settings.top_k_runbooks)
        except KnowledgeUnavailableError:
            raise
        except Exception as error:  # any client or transport failure of Qdrant
            raise KnowledgeUnavailableError(f"{type(error).__name__}: {error}") from error
        return Retrieved(
            history=[_context(hit) for hit in logs[:k] + incidents],
            runbooks=[_context(hit) for hit in runbooks],
        )

    def _retrieval_answer(
        self,
        request: ExplainRequest,
        analysis_type: AnalysisType,
        retrieved: Retrieved,
        reason: str,
    ) -> ExplainResponse:
        template = TEMPLATES[analysis_type]
        actions: list[str] = []
        prevention: list[str] = []
        for item in retrieved.runbooks:
            actions += self._runbook_steps(item.document, "Remediation")
            prevention += self._runbook_steps(item.document, "Prevention")
            if actions:
                break
        evidence = ", ".join(
            f"{f.name}={f.value:.4g}"
            + (f" (baseline {f.baseline:.4g})" if f.baseline is not None else "")
            for f in request.top_features[:3]
        )
        root_cause = f"Likely a {analysis_type} problem on {request.instance_id}"
        root_cause += f"; strongest signals: {evidence}." if evidence else "."
        root_cause += _evidence_sentence(request.log_evidence)
        if retrieved.history:
            root_cause += f" Most similar past event: {retrieved.history[0].text}"
        return ExplainResponse(
            root_cause=root_cause,
            impact=template.impact,
            actions=_unique(actions)[:_MAX_STEPS] or list(template.actions),
            prevention=_unique(prevention)[:_MAX_STEPS] or list(template.prevention),
            analysis_type=analysis_type,
            context=retrieved.history + retrieved.runbooks,
            degraded=True,
            degraded_reason=reason,
        )

    def _runbook_steps(self, document: str, section_word: str) -> list[str]:
        try:
            texts = self.kb.section_texts(document, section_word)
        except Exception:  # Qdrant went away after retrieval: the template's steps will do
            logger.exception("reading runbook %s failed", document)
            return []
        return [step for text in texts for step in list_items(text)]


def generic_answer(
    analysis_type: AnalysisType, reason: str, *, evidence: Sequence[LogEvidence] = ()
) -> ExplainResponse:
    """The analysis type's generic answer, naming the request's log evidence when it has any."""
    template = TEMPLATES[analysis_type]
    return ExplainResponse(
        root_cause=template.root_cause + _evidence_sentence(evidence),
        impact=template.impact,
        actions=list(template.actions),
        prevention=list(template.prevention),
        analysis_type=analysis_type,
        context=[],
        degraded=True,
        degraded_reason=reason,
    )


def _log_text(request: ExplainRequest) -> list[str]:
    """The request's log lines and its evidence's example lines: what type detection reads."""
    examples = [line for item in request.log_evidence for line in item.examples]
    return [*request.log_lines, *examples]


def _evidence_sentence(evidence: Sequence[LogEvidence]) -> str:
    """`` Log evidence: ...`` naming the most telling templates, or nothing without any."""
    if not evidence:
        return ""
    named = "; ".join(describe_evidence(item) for item in evidence[:_ANSWER_EVIDENCE])
    return f" Log evidence: {named}."


def _query_text(request: ExplainRequest, analysis_type: AnalysisType) -> str:
    features = ", ".join(f.name for f in request.top_features[:5])
    # The evidence's lines first: a new or spiking template says more than the last lines.
    evidence = [
        (item.examples[0] if item.examples else item.template)[:300]
        for item in request.log_evidence[:_QUERY_EVIDENCE]
    ]
    recent = [line[:300] for line in request.log_lines[-_QUERY_LOG_LINES:]]
    lines = "\n".join([*evidence, *recent])
    return f"{analysis_type} anomaly. Top features: {features}.\n{lines}"


def _distinct(hits: list[Hit]) -> list[Hit]:
    """The hits in order, the first of each text only."""
    seen: set[str] = set()
    kept = []
    for hit in hits:
        text = str(hit.payload.get("text", ""))
        if text not in seen:
            seen.add(text)
            kept.append(hit)
    return kept


def _context(hit: Hit) -> ContextItem:
    payload = hit.payload
    return ContextItem(
        kind=payload.get("kind", "log"),
        text=_context_text(payload),
        score=round(hit.score, 4),
        document=str(payload.get("document", "")),
        section=payload.get("section"),
        instance_id=payload.get("instance_id"),
        service=payload.get("service"),
        timestamp=payload.get("timestamp"),
        incident_type=payload.get("incident_type"),
    )


def _context_text(payload: dict[str, object]) -> str:
    """The point's text; for a log template, with how often and when it was written."""
    text = str(payload.get("text", ""))
    count, start, end = (payload.get(k) for k in ("count", "window_start", "window_end"))
    if not isinstance(count, int) or not isinstance(start, str) or not isinstance(end, str):
        return text
    since, until = datetime.fromisoformat(start), datetime.fromisoformat(end)
    return f"{text} ({count}× between {since:%Y-%m-%d %H:%M} and {until:%H:%M} UTC)"


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
