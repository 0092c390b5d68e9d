"""The LLM pass over prepared files: which windows are worth the LLM's time, and their answers
folded into each file's analysis.

``windows_for_llm`` picks the windows holding the most severe templates (most records first)
and ``window_context`` gives the LLM what it needs of one. ``run_llm`` sends every chosen
window (one prompt per analysis type), checks and merges the answers, and says in each file's
``llm`` status whether it took part and, if not, why; the deterministic findings stay either
way.
"""

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from threading import Event

from contracts.log_analysis import Evidence, FileAnalysis, Finding, LLMStatus
from telemetry.logs.analysis.llm import (
    LLMAnswerError,
    LLMUnavailableError,
    Provider,
    make_provider,
    parse_answer,
)
from telemetry.logs.analysis.merge import FindingMerger, WindowContext, check_answer
from telemetry.logs.analysis.prompts import answer_schema, system_prompt, user_prompt
from telemetry.logs.analysis.settings import LOCAL_LLM_BASE_URL, LogAnalysisSettings
from telemetry.logs.analysis.template_stats import TemplateStats, record_summary
from telemetry.logs.analysis.windows import Window, window_text
from telemetry.logs.templates import MinedRecord

MAX_KNOWN_IN_PROMPT = 8
# How much a template of each severity makes a window worth sending to the LLM.
WINDOW_WEIGHT = {"critical": 8.0, "high": 4.0, "medium": 2.0, "low": 1.0, "info": 0.0}


@dataclass
class PreparedFile:
    """A file analysed without the LLM, and what the LLM needs of it."""

    analysis: FileAnalysis
    contexts: list[WindowContext]
    templates: dict[int, Evidence]


def windows_for_llm(
    windows: Sequence[Window], templates: Sequence[TemplateStats], limit: int
) -> set[int]:
    """The indices of at most ``limit`` windows worth sending: severe templates, weighted by
    ``log(1 + count)``; a window with no warning or error is never sent."""
    if limit <= 0:
        return set()
    weight = {
        entry.template_id: WINDOW_WEIGHT[entry.severity] if entry.severity else 0.0
        for entry in templates
    }
    scores = {
        window.index: sum(weight[tid] * math.log1p(count) for tid, count in window.counts.items())
        for window in windows
    }
    ranked = sorted((i for i, s in scores.items() if s > 0), key=lambda i: (-scores[i], i))
    return set(ranked[:limit])


def window_context(
    window: Window, mined: Sequence[MinedRecord], findings: Sequence[Finding]
) -> WindowContext:
    """What the LLM is shown of a window and what its answer is checked against: the text,
    each line's template and summary, and the findings already known there."""
    present = set(window.counts)
    first, last = mined[window.start].record.line, mined[window.end - 1].record.line
    known = [
        finding.id
        for finding in findings
        if any(
            evidence.template_id in present
            and evidence.first_line <= last
            and evidence.last_line >= first
            for evidence in finding.evidence
        )
    ][:MAX_KNOWN_IN_PROMPT]
    return WindowContext(
        index=window.index,
        first_line=first,
        last_line=last,
        text=window_text(window),
        lines={
            mined[i].record.line: (mined[i].template.template_id, record_summary(mined[i].record))
            for i in range(window.start, window.end)
        },
        shown=tuple(
            sorted(
                {line for entry in window.entries for line in (entry.first_line, entry.last_line)}
            )
        ),
        known=tuple(known),
    )


def llm_base_url(settings: LogAnalysisSettings, llm_url: str | None) -> str | None:
    """The LLM API's base URL: ``llm_url``, else the settings', else the local server's for an
    OpenAI-compatible provider."""
    if llm_url:
        return llm_url
    if settings.llm_base_url:
        return settings.llm_base_url
    return LOCAL_LLM_BASE_URL if settings.llm_provider == "openai_compatible" else None


@dataclass
class _FileLLM:
    """One file's LLM bookkeeping."""

    prepared: PreparedFile
    merger: FindingMerger
    answered: int = 0
    sent: set[int] = field(default_factory=set)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)


def run_llm(
    prepared: Sequence[PreparedFile],
    settings: LogAnalysisSettings,
    llm_url: str | None,
    notify: Callable[[str], None],
) -> None:
    """Send every chosen window to the LLM and fold the answers into each file's analysis."""
    work = [
        _FileLLM(item, FindingMerger(list(item.analysis.findings), item.templates))
        for item in prepared
    ]
    pending = [(state, context) for state in work for context in state.prepared.contexts]
    provider: Provider | None = None
    failure: str | None = None
    if pending:
        try:
            provider = make_provider(settings, llm_url)
        except LLMUnavailableError as error:
            failure = str(error)
    if provider is not None:
        stop = Event()
        unavailable: list[str] = []

        def ask(state: _FileLLM, context: WindowContext) -> None:
            assert provider is not None
            if stop.is_set():
                return
            analysis = state.prepared.analysis
            known = [f for f in analysis.findings if f.id in context.known]
            state.sent.add(context.index)
            try:
                reply = provider.complete(
                    system_prompt(analysis.analysis_type.used),
                    user_prompt(
                        analysis.source, context.first_line, context.last_line, context.text, known
                    ),
                    answer_schema(context.known, context.shown),
                )
                answer = parse_answer(reply)
            except LLMUnavailableError as error:
                stop.set()
                unavailable.append(str(error))
                return
            except LLMAnswerError as error:
                state.errors.append(f"window {context.index}: {error}")
                return
            finally:
                notify(f"LLM: {analysis.source} window {context.index}")
            accepted, rejected = check_answer(answer, context)
            rejected = [f"window {context.index}: {p}" for p in answer.problems] + rejected
            state.answered += 1
            state.rejected += len(rejected) - len(answer.problems) + answer.dropped
            state.rejections.extend(rejected)
            state.merger.add(context, accepted, answer.ranking)

        with ThreadPoolExecutor(settings.llm_concurrency) as pool:
            for future in [pool.submit(ask, state, context) for state, context in pending]:
                future.result()
        if unavailable:
            failure = unavailable[0]
    for state in work:
        analysis = state.prepared.analysis
        windows = [
            window.model_copy(update={"sent_to_llm": window.index in state.sent})
            for window in analysis.windows
        ]
        update: dict[str, object] = {
            "llm": _status(state, provider, settings, llm_url, failure),
            "windows": windows,
        }
        if state.answered:
            update["findings"] = state.merger.result()
        state.prepared.analysis = analysis.model_copy(update=update)


def _status(
    state: _FileLLM,
    provider: Provider | None,
    settings: LogAnalysisSettings,
    llm_url: str | None,
    failure: str | None,
) -> LLMStatus:
    used = state.answered > 0
    error: str | None = None
    if not used:
        if failure is not None:
            error = f"LLM unavailable: {failure}"
        elif state.errors:
            error = "no valid answer: " + "; ".join(state.errors[:3])
        elif not state.prepared.contexts:
            error = "no window held a warning or an error worth sending"
    return LLMStatus(
        used=used,
        provider=settings.llm_provider,
        model=provider.model if provider is not None else settings.llm_model,
        base_url=provider.base_url if provider is not None else llm_base_url(settings, llm_url),
        windows_sent=len(state.sent),
        windows_answered=state.answered,
        findings_added=state.merger.added,
        findings_confirmed=len(state.merger.confirmed),
        findings_rejected=state.rejected,
        error=error,
        rejections=[
            *state.errors,
            *state.rejections,
            *(
                [f"LLM unavailable after {state.answered} windows: {failure}"]
                if used and failure
                else []
            ),
        ][:20],
    )
