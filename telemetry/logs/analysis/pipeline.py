"""Files to a report: each file prepared on its own (in parallel), then the LLM over all.

``prepare_file`` is everything that needs no LLM, for one file: parse (format detection,
multi-line records joined), mine templates, cut windows, detect the analysis type, make the
deterministic findings, and pick the windows worth the LLM's time (those holding the most
severe templates, most records first). Several files are prepared in worker processes.
``analyze_inputs`` then sends the chosen windows to the LLM (one prompt per type), checks and
merges its answers, and says in each file's ``llm`` status whether it took part and, if not,
why; the deterministic findings stay either way.
"""

import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from threading import Event
from typing import BinaryIO

from contracts.explanation import AnalysisType
from contracts.log_analysis import (
    AnalysisTypeChoice,
    AnalysisTypeResult,
    Evidence,
    FileAnalysis,
    Finding,
    InputStats,
    LLMStatus,
    LogAnalysisReport,
    SkippedInput,
    TimelineRow,
    WindowSettings,
    WindowStats,
)
from telemetry.logs.analysis.classify import TemplateVote, classify
from telemetry.logs.analysis.findings import (
    SEVERITY_RANK,
    TemplateStats,
    collect_templates,
    deterministic_findings,
    record_summary,
    template_evidence,
)
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
from telemetry.logs.analysis.tokens import TokenizerError, TokenizerSpec, resolve_tokenizer
from telemetry.logs.analysis.windows import Window, WindowBuilder, window_text
from telemetry.logs.detection import parse_file
from telemetry.logs.reading import LogInputError
from telemetry.logs.templates import LogTemplateMiner, MinedRecord, mine_records

STDIN = "-"
TIMELINE_ROWS = 30
MAX_KNOWN_IN_PROMPT = 8
# How much a template of each severity makes a window worth sending to the LLM.
WINDOW_WEIGHT = {"critical": 8.0, "high": 4.0, "medium": 2.0, "low": 1.0, "info": 0.0}


@dataclass(frozen=True)
class AnalysisOptions:
    """What ``prepare_file`` needs, in a form that crosses to a worker process."""

    requested_type: AnalysisTypeChoice = "auto"
    log_format: str | None = None
    tokenizer: TokenizerSpec = field(default_factory=lambda: TokenizerSpec("approximate"))
    window_tokens: int = 1024
    window_overlap: float = 0.1
    window_max_records: int = 500
    max_findings: int = 25
    rare_max_count: int = 2
    burst_window_s: float = 60.0
    llm_windows: int = 0

    @classmethod
    def from_settings(
        cls,
        settings: LogAnalysisSettings,
        *,
        requested_type: AnalysisTypeChoice,
        log_format: str | None,
        tokenizer: TokenizerSpec,
        llm_windows: int,
    ) -> "AnalysisOptions":
        """The options of a run."""
        return cls(
            requested_type=requested_type,
            log_format=log_format,
            tokenizer=tokenizer,
            window_tokens=settings.window_tokens,
            window_overlap=settings.window_overlap,
            window_max_records=settings.window_max_records,
            max_findings=settings.max_findings,
            rare_max_count=settings.rare_max_count,
            burst_window_s=settings.burst_window_s,
            llm_windows=llm_windows,
        )


@dataclass
class PreparedFile:
    """A file analysed without the LLM, and what the LLM needs of it."""

    analysis: FileAnalysis
    contexts: list[WindowContext]
    templates: dict[int, Evidence]


def prepare_file(path: Path, source: str, options: AnalysisOptions) -> PreparedFile:
    """Everything about one log that needs no LLM (see the module docstring).

    Args:
        path: The log file.
        source: Its name in the report (``<stdin>`` for standard input).
        options: Windows, thresholds, type, tokenizer.

    Returns:
        The analysis, with the LLM status "not asked", and the windows for the LLM.

    Raises:
        LogInputError: The file is empty, binary, or holds no record.
        ValueError: ``options.log_format`` is not a valid format.
        OSError: The file cannot be read.
    """
    started = time.perf_counter()
    parsed = parse_file(path, options.log_format)
    if not parsed.records:
        raise LogInputError(
            f"{source} holds no log record ({parsed.reading.lines:,} lines, "
            f"{parsed.reading.skipped:,} of them skipped as binary or too long)"
        )
    mined = mine_records(parsed.records, LogTemplateMiner())
    tokenizer_spec = options.tokenizer
    try:
        windows = _build_windows(mined, options, tokenizer_spec)
    except TokenizerError as error:
        tokenizer_spec = TokenizerSpec("approximate", note=f"{error}; token counts approximated")
        windows = _build_windows(mined, options, tokenizer_spec)
    templates = collect_templates(mined, windows)
    classification = classify(
        TemplateVote(entry.words, entry.count, entry.levels.get("CRITICAL", 0), entry.severity)
        for entry in templates
    )
    used: AnalysisType = (
        classification.detected if options.requested_type == "auto" else options.requested_type
    )
    findings, omitted = deterministic_findings(
        mined,
        templates,
        rare_max_count=options.rare_max_count,
        burst_window_s=options.burst_window_s,
        max_findings=options.max_findings,
    )
    chosen = _windows_for_llm(windows, templates, options.llm_windows)
    contexts = [_context(window, mined, findings) for window in windows if window.index in chosen]
    by_id = {entry.template_id: entry for entry in templates}
    in_contexts = {template_id for context in contexts for template_id, _ in context.lines.values()}
    reading, parsing = parsed.reading, parsed.parsing
    levels: dict[str, int] = {}
    for entry in templates:
        for level, count in entry.levels.items():
            levels[level] = levels.get(level, 0) + count
    analysis = FileAnalysis(
        source=source,
        input=InputStats(
            format=parsed.format,
            lines=reading.lines,
            records=len(mined),
            continuation_lines=parsing.continuation_lines,
            skipped_too_long=reading.skipped_too_long,
            skipped_binary=reading.skipped_binary,
            replaced_invalid_utf8=reading.replaced_invalid_utf8,
            templates=len(templates),
            levels=dict(sorted(levels.items())),
        ),
        analysis_type=AnalysisTypeResult(
            requested=options.requested_type,
            detected=classification.detected,
            used=used,
            confidence=classification.confidence,
            scores=classification.scores,
        ),
        window_settings=WindowSettings(
            max_tokens=options.window_tokens,
            overlap=options.window_overlap,
            max_records=options.window_max_records,
            tokenizer="approximate"
            if tokenizer_spec.kind == "approximate"
            else f"server {tokenizer_spec.url}",
            tokenizer_note=tokenizer_spec.note,
        ),
        windows=[_window_stats(window, mined, window.index in chosen) for window in windows],
        timeline=_timeline(templates, windows),
        findings=findings,
        findings_omitted=omitted,
        llm=LLMStatus(used=False, error="not asked (--no-llm)"),
        seconds=round(time.perf_counter() - started, 3),
    )
    return PreparedFile(
        analysis, contexts, {tid: template_evidence(by_id[tid]) for tid in in_contexts}
    )


def _build_windows(
    mined: Sequence[MinedRecord], options: AnalysisOptions, spec: TokenizerSpec
) -> list[Window]:
    tokenizer = spec.build()
    try:
        return WindowBuilder(
            tokenizer, options.window_tokens, options.window_overlap, options.window_max_records
        ).build(mined)
    finally:
        close = getattr(tokenizer, "close", None)
        if close is not None:
            close()


def _window_stats(window: Window, mined: Sequence[MinedRecord], sent: bool) -> WindowStats:
    return WindowStats(
        index=window.index,
        first_line=mined[window.start].record.line,
        last_line=mined[window.end - 1].record.line,
        records=window.records,
        lines=window.lines,
        entries=len(window.entries),
        tokens=window.tokens,
        overlap_records=window.overlap_records,
        overlap_tokens=window.overlap_tokens,
        sent_to_llm=sent,
    )


def _timeline(templates: Sequence[TemplateStats], windows: Sequence[Window]) -> list[TimelineRow]:
    """Counts per window of the templates that matter most: the most severe, then the most
    frequent (``TIMELINE_ROWS`` at most)."""
    ranked = sorted(
        templates,
        key=lambda e: (SEVERITY_RANK[e.severity] if e.severity else len(SEVERITY_RANK), -e.count),
    )
    return [
        TimelineRow(
            template_id=entry.template_id,
            template=entry.text,
            severity=entry.severity,
            counts=[window.counts.get(entry.template_id, 0) for window in windows],
        )
        for entry in ranked[:TIMELINE_ROWS]
    ]


def _windows_for_llm(
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


def _context(
    window: Window, mined: Sequence[MinedRecord], findings: Sequence[Finding]
) -> WindowContext:
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


ProgressCallback = Callable[[str], None]


def analyze_inputs(
    inputs: Sequence[str],
    settings: LogAnalysisSettings,
    *,
    requested_type: AnalysisTypeChoice = "auto",
    use_llm: bool = True,
    llm_url: str | None = None,
    log_format: str | None = None,
    stdin: BinaryIO | None = None,
    on_progress: ProgressCallback | None = None,
) -> LogAnalysisReport:
    """Analyse logs: each file prepared (in parallel when there are several), then the LLM.

    Args:
        inputs: File paths; ``-`` reads standard input (once).
        settings: Windows, thresholds, provider.
        requested_type: ``auto`` detects the type per file; a type forces it.
        use_llm: False analyses without any LLM (and approximates tokens).
        llm_url: Base URL of the LLM API, over the settings'.
        log_format: A LogPAI header format or named-group regex tried first on each line.
        stdin: Where ``-`` reads from (standard input's bytes by default).
        on_progress: Called with a short message after each file and each LLM window.

    Returns:
        The report: one analysis per readable input, the others in ``skipped``.
    """
    notify = on_progress or (lambda _: None)
    skipped: list[SkippedInput] = []
    base_url = _llm_base_url(settings, llm_url) if use_llm else None
    tokenizer = resolve_tokenizer(
        settings.tokenizer if use_llm else "approximate",
        base_url if settings.llm_provider == "openai_compatible" else None,
        settings.llm_model,
    )
    options = AnalysisOptions.from_settings(
        settings,
        requested_type=requested_type,
        log_format=log_format,
        tokenizer=tokenizer,
        llm_windows=settings.llm_max_windows if use_llm else 0,
    )
    spool = Path(tempfile.mkdtemp(prefix="vigil-logs-")) if STDIN in inputs else None
    try:
        jobs: list[tuple[Path, str]] = []
        for name in dict.fromkeys(inputs):
            if name == STDIN:
                assert spool is not None
                jobs.append((_spool_stdin(stdin, spool / "stdin.log"), "<stdin>"))
                continue
            path = Path(name)
            if not path.exists():
                skipped.append(SkippedInput(source=name, reason="no such file"))
            elif not path.is_file():
                skipped.append(SkippedInput(source=name, reason="not a regular file"))
            else:
                jobs.append((path, name))
        size = sum(path.stat().st_size for path, _ in jobs)
        workers = settings.workers if size >= settings.parallel_min_bytes else 1
        prepared = _prepare_all(jobs, options, workers, skipped, notify)
    finally:
        if spool is not None:
            shutil.rmtree(spool, ignore_errors=True)
    if use_llm:
        _run_llm(prepared, settings, llm_url, notify)
    return LogAnalysisReport(
        generated_at=datetime.now(UTC),
        files=[item.analysis for item in prepared],
        skipped=skipped,
    )


def _llm_base_url(settings: LogAnalysisSettings, llm_url: str | None) -> str | None:
    if llm_url:
        return llm_url
    if settings.llm_base_url:
        return settings.llm_base_url
    return LOCAL_LLM_BASE_URL if settings.llm_provider == "openai_compatible" else None


def _spool_stdin(stdin: BinaryIO | None, path: Path) -> Path:
    """Standard input copied to a file, so it is read like any other (and only once)."""
    import sys

    source = stdin if stdin is not None else sys.stdin.buffer
    with path.open("wb") as out:
        shutil.copyfileobj(source, out, 1 << 20)
    return path


def _prepare_all(
    jobs: Sequence[tuple[Path, str]],
    options: AnalysisOptions,
    workers: int | None,
    skipped: list[SkippedInput],
    notify: ProgressCallback,
) -> list[PreparedFile]:
    """``prepare_file`` for every job, in worker processes when there are several files and
    ``workers`` allows more than one; an input that cannot be analysed joins ``skipped`` with
    the reason."""
    results: dict[int, PreparedFile] = {}
    processes = min(len(jobs), workers or _cpu_count())
    if processes <= 1:
        for position, (path, source) in enumerate(jobs):
            _collect(
                position, source, partial(prepare_file, path, source, options), results, skipped
            )
            notify(f"analysed {source}")
        return [results[i] for i in sorted(results)]
    # spawn, not fork: the parent may hold threads (HTTP clients, progress bars).
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(prepare_file, path, source, options) for path, source in jobs]
        for position, (future, (_, source)) in enumerate(zip(futures, jobs, strict=True)):
            _collect(position, source, future.result, results, skipped)
            notify(f"analysed {source}")
    return [results[i] for i in sorted(results)]


def _collect(
    position: int,
    source: str,
    run: Callable[[], PreparedFile],
    results: dict[int, PreparedFile],
    skipped: list[SkippedInput],
) -> None:
    try:
        results[position] = run()
    except LogInputError as error:
        skipped.append(SkippedInput(source=source, reason=str(error)))
    except (OSError, ValueError) as error:
        skipped.append(SkippedInput(source=source, reason=f"{type(error).__name__}: {error}"))


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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


def _run_llm(
    prepared: Sequence[PreparedFile],
    settings: LogAnalysisSettings,
    llm_url: str | None,
    notify: ProgressCallback,
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
        base_url=provider.base_url if provider is not None else _llm_base_url(settings, llm_url),
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
