"""Files to a report: each file prepared on its own (in parallel), then the LLM over all.

``prepare_file`` is everything that needs no LLM, for one file: parse (format detection,
multi-line records joined), mine templates, cut windows, detect the analysis type, make the
deterministic findings, and pick the windows worth the LLM's time (``llm_pass``). Several files
are prepared in worker processes. ``analyze_inputs`` then runs the LLM pass
(``llm_pass.run_llm``) over them all; the deterministic findings stay either way.
"""

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import BinaryIO

from contracts.explanation import AnalysisType
from contracts.log_analysis import (
    AnalysisTypeChoice,
    AnalysisTypeResult,
    FileAnalysis,
    InputStats,
    LLMStatus,
    LogAnalysisReport,
    SkippedInput,
    TimelineRow,
    WindowSettings,
    WindowStats,
)
from telemetry.logs.analysis.classify import TemplateVote, classify
from telemetry.logs.analysis.findings import deterministic_findings
from telemetry.logs.analysis.llm_pass import (
    PreparedFile,
    llm_base_url,
    run_llm,
    window_context,
    windows_for_llm,
)
from telemetry.logs.analysis.settings import LogAnalysisSettings
from telemetry.logs.analysis.template_stats import (
    SEVERITY_RANK,
    TemplateStats,
    collect_templates,
    template_evidence,
)
from telemetry.logs.analysis.tokens import TokenizerError, TokenizerSpec, resolve_tokenizer
from telemetry.logs.analysis.windows import Window, WindowBuilder
from telemetry.logs.detection import parse_file
from telemetry.logs.reading import LogInputError
from telemetry.logs.templates import LogTemplateMiner, MinedRecord, mine_records

STDIN = "-"
TIMELINE_ROWS = 30


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
    chosen = windows_for_llm(windows, templates, options.llm_windows)
    contexts = [
        window_context(window, mined, findings) for window in windows if window.index in chosen
    ]
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
    base_url = llm_base_url(settings, llm_url) if use_llm else None
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
        run_llm(prepared, settings, llm_url, notify)
    return LogAnalysisReport(
        generated_at=datetime.now(UTC),
        files=[item.analysis for item in prepared],
        skipped=skipped,
    )


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
