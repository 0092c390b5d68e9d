"""The explanation pipeline: analysis type → retrieval → prompt → LLM, with fallbacks.

Fallbacks (each answer flagged ``degraded`` with the reason):

- Qdrant down, or the collection missing or empty → the analysis type's generic answer.
- LLM down, timed out, or no valid answer after the retry → the retrieved context and the
  remediation / prevention steps of the best-matching runbook.
- A valid answer too thin to act on, or citing an instance it was not given
  (``rag.answer_check``) → the same retrieval answer. Not retried: a model that answered
  "1" once rarely does better at the same prompt, and the caller already waited.
"""

import logging
from dataclasses import dataclass
from datetime import timedelta

from contracts.explanation import AnalysisType, ContextItem, ExplainRequest, ExplainResponse
from rag.analysis import detect_analysis_type
from rag.answer_check import UnusableAnswerError, usable_answer
from rag.chunking import list_items
from rag.embeddings import Embedder
from rag.knowledge_base import Hit, KnowledgeBase
from rag.llm import LLMClient, LLMError
from rag.prompts import SYSTEM_PROMPT, TEMPLATES, build_prompt
from rag.settings import RagSettings

logger = logging.getLogger(__name__)

_QUERY_LOG_LINES = 10
_INCIDENTS_RETRIEVED = 2
_MAX_STEPS = 6


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
        analysis_type = detect_analysis_type(request.top_features, request.log_lines)
        try:
            retrieved = self.retrieve(request, analysis_type)
        except KnowledgeUnavailableError as error:
            return generic_answer(analysis_type, f"knowledge base unavailable: {error}")
        prompt = build_prompt(request, analysis_type, retrieved.history, retrieved.runbooks)
        context = retrieved.history + retrieved.runbooks
        try:
            answer = usable_answer(self.llm.explain(SYSTEM_PROMPT, prompt), request)
        except LLMError as error:
            logger.warning("LLM failed, answering from retrieval only: %s", error)
            return self._retrieval_answer(request, analysis_type, retrieved, f"LLM failed: {error}")
        except UnusableAnswerError as error:
            logger.warning("LLM answer unusable, answering from retrieval only: %s", error)
            reason = f"LLM answer unusable: {error}"
            return self._retrieval_answer(request, analysis_type, retrieved, reason)
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
                    vector, ["log"], k, service=request.service, since=since, until=until
                )
            if len(logs) < k:
                seen = {hit.payload.get("text") for hit in logs}
                wider = self.kb.search(vector, ["log"], k, since=since, until=until)
                logs += [hit for hit in wider if hit.payload.get("text") not in seen]
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


def generic_answer(analysis_type: AnalysisType, reason: str) -> ExplainResponse:
    template = TEMPLATES[analysis_type]
    return ExplainResponse(
        root_cause=template.root_cause,
        impact=template.impact,
        actions=list(template.actions),
        prevention=list(template.prevention),
        analysis_type=analysis_type,
        context=[],
        degraded=True,
        degraded_reason=reason,
    )


def _query_text(request: ExplainRequest, analysis_type: AnalysisType) -> str:
    features = ", ".join(f.name for f in request.top_features[:5])
    lines = "\n".join(line[:300] for line in request.log_lines[-_QUERY_LOG_LINES:])
    return f"{analysis_type} anomaly. Top features: {features}.\n{lines}"


def _context(hit: Hit) -> ContextItem:
    payload = hit.payload
    return ContextItem(
        kind=payload.get("kind", "log"),
        text=str(payload.get("text", "")),
        score=round(hit.score, 4),
        document=str(payload.get("document", "")),
        section=payload.get("section"),
        instance_id=payload.get("instance_id"),
        service=payload.get("service"),
        timestamp=payload.get("timestamp"),
        incident_type=payload.get("incident_type"),
    )


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
