"""Log commands: parse and mine any log, measure grouping accuracy, detect log anomalies."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from telemetry.logs.output import OutputFormat

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
    from vigil.options import split_entities

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


def _cells(values: list[float | None]) -> list[str]:
    return ["-" if value is None else f"{value:.3f}" for value in values]
