"""Log commands: parse and mine any log, measure grouping accuracy, detect log anomalies,
analyse a log (deterministic findings, an LLM on top)."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from contracts.log_analysis import AnalysisTypeChoice
from telemetry.logs.output import OutputFormat

if TYPE_CHECKING:
    from contracts.log_analysis import LogAnalysisReport
    from telemetry.logs.watch.watcher import Watcher

logs_app = typer.Typer(
    help="Logs as telemetry: parse any format, mine templates, find anomalies.",
    no_args_is_help=True,
)
LogFormatOption = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help='A LogPAI header format ("<Date> <Time> <Level> <Component>: <Content>") or a '
        "regex with named groups (message, time, level, component...); tried first on every "
        "line, the built-in formats take the rest. Default: detected from the file.",
    ),
]
StateOption = Annotated[
    str | None,
    typer.Option(
        "--state",
        help="Template state file (a path or s3://bucket/prefix/name.json): loaded when it "
        "exists and saved after, so template ids stay the same across runs.",
    ),
]


@logs_app.command("parse")
def parse(
    file: Annotated[Path, typer.Argument(help="The log file, in any format.")],
    log_format: LogFormatOption = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="Output format: csv or json.")
    ] = "csv",
    state: StateOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Write the rows here instead of standard output.")
    ] = None,
) -> None:
    """Parse a log and mine its templates: one row per record, in input order (line,
    template_id, template, timestamp, level, component, message, parameters, metadata)."""
    from contracts.settings import get_settings
    from telemetry.logs.detection import parse_file
    from telemetry.logs.output import write_rows
    from telemetry.logs.state import persistent_miner
    from telemetry.logs.templates import mine_records

    parsed = parse_file(file, log_format)
    with persistent_miner(state, get_settings()) as miner:
        mined = mine_records(parsed.records, miner)
    if out is None:
        rows = write_rows(mined, output, sys.stdout)
    else:
        with out.open("w", newline="", encoding="utf-8") as stream:
            rows = write_rows(mined, output, stream)
    reading, parsing = parsed.reading, parsed.parsing
    Console(stderr=True).print(
        f"{rows:,} records from {reading.lines:,} lines (format {parsed.format}); "
        f"{parsing.continuation_lines:,} continuation lines joined; skipped "
        f"{reading.skipped_too_long:,} too long and {reading.skipped_binary:,} binary lines; "
        f"{reading.replaced_invalid_utf8:,} lines with invalid UTF-8 repaired; "
        f"{miner.template_count:,} templates"
    )


@logs_app.command("evaluate")
def evaluate(
    path: Annotated[
        Path, typer.Option(help="Loghub folder: X/X_2k.log and X_2k.log_structured.csv.")
    ],
    log_format_file: Annotated[
        Path | None,
        typer.Option(help="LogPAI header formats by system (default PATH/log_formats.json)."),
    ] = None,
    systems: Annotated[
        str | None, typer.Option(help="Comma-separated systems (default: all under PATH).")
    ] = None,
) -> None:
    """Grouping accuracy per Loghub system: ours from raw lines, ours with the LogPAI header
    format, and plain Drain3 (defaults) on LogPAI's content; then the means."""
    from telemetry.logs.grouping import evaluate_loghub, mean, read_log_formats
    from vigil.commands.options import split_entities

    console = Console()
    default_formats = path / "log_formats.json"
    formats_path = log_format_file or (default_formats if default_formats.is_file() else None)
    with console.status("evaluating") as status:
        results = evaluate_loghub(
            path,
            read_log_formats(formats_path),
            split_entities(systems),
            on_system=lambda system: status.update(f"evaluating {system}"),
        )
    table = Table("system", "ours, raw lines", "ours, header format", "Drain3 on content")
    for result in results:
        table.add_row(result.system, *_cells([result.raw, result.with_format, result.drain3]))
    table.add_row(
        "mean",
        *_cells(
            [
                mean([r.raw for r in results]),
                mean([r.with_format for r in results]),
                mean([r.drain3 for r in results]),
            ]
        ),
        style="bold",
    )
    console.print(table)


@logs_app.command("evaluate-anomalies")
def evaluate_anomalies(
    path: Annotated[Path, typer.Option(help="A labelled BGL log (BGL_2k.log).")],
) -> None:
    """Line-level precision, recall and F1 of the log anomaly detector and of two baselines
    (error keywords; templates seen at most 10 times) on a labelled BGL log."""
    from telemetry.logs.anomaly_evaluation import evaluate_anomalies as run

    table = Table("method", "precision", "recall", "F1", "lines flagged")
    for scores in run(path):
        table.add_row(
            scores.method,
            *_cells([scores.precision, scores.recall, scores.f1]),
            f"{scores.flagged:,}",
        )
    Console().print(table)


@logs_app.command("detect")
def detect(
    file: Annotated[Path, typer.Argument(help="The log file, in any format.")],
    log_format: LogFormatOption = None,
    state: StateOption = None,
) -> None:
    """Log anomalies per 1-minute window (new or rare templates, spikes, error bursts,
    sequence breaks): one tab-separated line per alert."""
    from contracts.settings import get_settings
    from telemetry.logs.anomalies import WindowedRecord
    from telemetry.logs.anomalies import detect as run
    from telemetry.logs.detection import parse_file
    from telemetry.logs.state import persistent_miner

    parsed = parse_file(file, log_format)
    with persistent_miner(state, get_settings()) as miner:
        items = [
            WindowedRecord(record, miner.add(record.first_line).template_id)
            for record in parsed.records
        ]
    messages = {record.line: record.first_line for record in parsed.records}
    print("line\twindow\ttemplate_id\tlevel\tsignals\tmessage")
    for alert in run(items):
        print(
            f"{alert.line}\t{alert.window_start.isoformat()}\t{alert.template_id}\t"
            f"{alert.level}\t{','.join(alert.signals)}\t{messages[alert.line]}"
        )


AnalysisOutput = Literal["text", "json", "csv", "html"]
LOG_ANALYSIS_TEMPLATE = "log_analysis.html.j2"


@logs_app.command("analyze")
def analyze(
    paths: Annotated[
        list[str], typer.Argument(help="Log files in any format; - reads standard input.")
    ],
    analysis_type: Annotated[
        AnalysisTypeChoice,
        typer.Option(
            "--type",
            help="Analysis type: auto detects it per file from templates, keywords and levels.",
        ),
    ] = "auto",
    output: Annotated[
        AnalysisOutput,
        typer.Option("--format", help="text (terminal), json, csv (findings) or html."),
    ] = "text",
    out: Annotated[
        Path | None, typer.Option(help="Write the report here instead of standard output.")
    ] = None,
    no_llm: Annotated[
        bool,
        typer.Option(
            "--no-llm",
            help="Deterministic findings only; tokens counted by the approximate tokenizer.",
        ),
    ] = False,
    llm_url: Annotated[
        str | None,
        typer.Option(
            help="Base URL of the LLM API (OpenAI-compatible: llama.cpp, vLLM), over "
            "VIGIL_LOGS_LLM_BASE_URL; its /tokenize counts the windows' tokens."
        ),
    ] = None,
    log_format: LogFormatOption = None,
    window_tokens: Annotated[
        int | None,
        typer.Option(min=64, help="Token budget of a window (VIGIL_LOGS_WINDOW_TOKENS)."),
    ] = None,
    overlap: Annotated[
        float | None,
        typer.Option(
            min=0.0, max=0.5, help="Share of a window the next repeats (VIGIL_LOGS_WINDOW_OVERLAP)."
        ),
    ] = None,
) -> None:
    """Analyse logs: windows counted in tokens, the analysis type, findings with severity,
    evidence, likely cause and actions (deterministic, then ranked and added to by the LLM).
    Exit 1 when no input could be analysed."""
    from telemetry.logs.analysis.pipeline import analyze_inputs
    from telemetry.logs.analysis.settings import LogAnalysisSettings, get_log_analysis_settings
    from telemetry.logs.analysis.tokens import TokenizerError

    overrides: dict[str, object] = {}
    if window_tokens is not None:
        overrides["window_tokens"] = window_tokens
    if overlap is not None:
        overrides["window_overlap"] = overlap
    settings = get_log_analysis_settings()
    if overrides:
        settings = LogAnalysisSettings.model_validate({**settings.model_dump(), **overrides})
    errors = Console(stderr=True)
    try:
        with errors.status("analysing") as status:
            report = analyze_inputs(
                paths,
                settings,
                requested_type=analysis_type,
                use_llm=not no_llm,
                llm_url=llm_url,
                log_format=log_format,
                on_progress=status.update,
            )
    except TokenizerError as error:
        errors.print(f"[bold red]error:[/bold red] {error}")
        raise typer.Exit(1) from error
    write_analysis(report, output, out)
    for item in report.skipped:
        errors.print(f"skipped {item.source}: {item.reason}", markup=False, highlight=False)
    if not report.files:
        errors.print("[bold red]error:[/bold red] no input could be analysed")
        raise typer.Exit(1)


def write_analysis(report: "LogAnalysisReport", output: AnalysisOutput, out: Path | None) -> None:
    """Write a report in one of the output formats, to a file or standard output."""
    from telemetry.logs.analysis.render import print_report, write_csv

    if output == "text":
        if out is None:
            print_report(report, Console())
        else:
            with out.open("w", encoding="utf-8") as stream:
                print_report(report, Console(file=stream, width=140, no_color=True))
        return
    if output == "json":
        text = report.model_dump_json(indent=2) + "\n"
    elif output == "html":
        text = render_analysis_html(report)
    else:
        import io

        buffer = io.StringIO(newline="")
        write_csv(report, buffer)
        text = buffer.getvalue()
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8", newline="")


def render_analysis_html(report: "LogAnalysisReport") -> str:
    """The report as one self-contained page (inline style and SVG, no script)."""
    import jinja2

    from telemetry.logs.analysis.render import finding_span, heat

    colors = {"critical": "#b71c1c", "high": "#d84315", "medium": "#f2b134", "low": "#2a7ab0"}
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parents[1] / "report" / "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
    )
    environment.globals.update(
        heat=heat,
        span=finding_span,
        severity_color=lambda severity: colors.get(severity or "", "#607d8b"),
    )
    return environment.get_template(LOG_ANALYSIS_TEMPLATE).render(report=report)


def _cells(values: list[float | None]) -> list[str]:
    return ["-" if value is None else f"{value:.3f}" for value in values]


WatchOutput = Literal["text", "jsonl"]


@logs_app.command("watch")
def watch(
    source: Annotated[
        str,
        typer.Argument(
            help="A log file (followed through rotation and truncation, like tail -F), - for "
            "standard input, or kinesis://STREAM (CloudWatch Logs subscription records)."
        ),
    ],
    window: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds per window (VIGIL_LOGS_WATCH_WINDOW_S, 60)."),
    ] = None,
    output: Annotated[
        WatchOutput,
        typer.Option("--format", help="text (terminal) or jsonl (one JSON object per window)."),
    ] = "text",
    tui: Annotated[
        bool, typer.Option("--tui", help="A terminal UI instead of printed windows.")
    ] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Serve the vigil_log_* metrics on /metrics here."),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address of the metrics endpoint (0.0.0.0 in a container).")
    ] = "127.0.0.1",
    state: StateOption = None,
    explain_url: Annotated[
        str | None,
        typer.Option(
            help="Explainer base URL: anomalous windows are explained through its POST "
            "/explain (VIGIL_LOGS_WATCH_EXPLAIN_URL; key VIGIL_LOGS_WATCH_EXPLAIN_API_KEY)."
        ),
    ] = None,
    log_format: LogFormatOption = None,
    from_start: Annotated[
        bool,
        typer.Option("--from-start", help="A file: read what it holds first (default: its end)."),
    ] = False,
    max_windows: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many windows.")
    ] = None,
) -> None:
    """Watch a live log: a window every --window seconds with its counts per template and its
    anomalies (new template, spike, error burst), optionally explained. Stops on Ctrl-C,
    SIGTERM or the end of standard input, after emitting the last window."""
    from contracts.settings import get_settings
    from telemetry.logs.watch.session import watch_session
    from telemetry.logs.watch.settings import LogWatchSettings, get_log_watch_settings

    overrides: dict[str, object] = {}
    if window is not None:
        overrides["window_s"] = window
    if explain_url is not None:
        overrides["explain_url"] = explain_url
    settings = get_log_watch_settings()
    if overrides:
        settings = LogWatchSettings.model_validate({**settings.model_dump(), **overrides})
    try:
        with watch_session(
            source,
            get_settings(),
            settings,
            state=state,
            log_format=log_format,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
            from_start=from_start,
        ) as watcher:
            if tui:
                from telemetry.logs.watch.tui import LogWatchApp

                app = LogWatchApp(watcher, max_windows=max_windows)
                try:
                    app.run()
                finally:
                    app.stop_watcher()
            else:
                _watch_until_stopped(watcher, output, max_windows)
    except (ValueError, OSError) as error:
        Console(stderr=True).print(f"[bold red]error:[/bold red] {error}", highlight=False)
        raise typer.Exit(1) from error


def _watch_until_stopped(watcher: "Watcher", output: WatchOutput, max_windows: int | None) -> None:
    """Run the watcher, printing each window, until Ctrl-C or SIGTERM (or the end)."""
    import signal
    import threading

    from telemetry.logs.watch.render import print_window

    console = Console()
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()  # the watcher emits the open window, saves its state and returns

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if output == "jsonl":
            watcher.run(
                lambda w: print(w.model_dump_json(), flush=True), stop, max_windows=max_windows
            )
        else:
            watcher.run(lambda w: print_window(w, console), stop, max_windows=max_windows)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@logs_app.command("subscribe")
def subscribe(
    stream: Annotated[str, typer.Option(help="The Kinesis stream the events go to.")],
    log_group: Annotated[
        list[str], typer.Option(help="A log group to subscribe (repeat for several).")
    ],
    role_arn: Annotated[
        str,
        typer.Option(
            help="The IAM role CloudWatch Logs assumes to put records into the stream "
            "(trusted by logs.amazonaws.com, allowed kinesis:PutRecord on it)."
        ),
    ],
    filter_name: Annotated[
        str, typer.Option(help="The subscription filter's name (replaced when it exists).")
    ] = "vigil-logs-watch",
    filter_pattern: Annotated[
        str, typer.Option(help="CloudWatch Logs filter pattern; empty: every event.")
    ] = "",
    create_shards: Annotated[
        int | None,
        typer.Option(min=1, help="Create the stream with this many shards if it is missing."),
    ] = None,
) -> None:
    """Send log groups' events to a Kinesis stream (a CloudWatch Logs subscription filter),
    for `vigil logs watch kinesis://STREAM`. Idempotent: the chart runs it on every upgrade."""
    import boto3

    from contracts.settings import get_settings
    from telemetry.logs.watch.kinesis import kinesis_client
    from telemetry.logs.watch.kinesis import subscribe as run

    settings = get_settings()
    logs = boto3.session.Session().client(
        "logs", endpoint_url=settings.aws_endpoint_url, region_name=settings.aws_region
    )
    arn = run(
        logs,
        kinesis_client(settings),
        log_groups=log_group,
        stream=stream,
        role_arn=role_arn,
        filter_name=filter_name,
        filter_pattern=filter_pattern,
        create_shards=create_shards,
    )
    Console(stderr=True).print(
        f"{len(log_group)} log group{'s' * (len(log_group) != 1)} subscribed to {arn} "
        f"(filter {filter_name})",
        highlight=False,
    )
