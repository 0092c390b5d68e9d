"""Log parsing throughput and memory: ``telemetry.logs`` (parse + mine) against plain Drain3.

Run: ``.venv/bin/python -m bench.logs [--lines N] [--path shared/data/loghub]``.

The lines: the Loghub samples under ``--path`` (every ``X/X_2k.log``), repeated to ``--lines``
in all (default 1,000,000, split evenly between the systems). Nine lines in ten are perturbed
on each repeat: every digit of their message part (the ``Content`` of LogPAI's structured
CSV) is redrawn from a fixed seed, so numbers, ids and addresses vary as in a live log while
the headers keep valid timestamps.

Each system's block is a file of its own: both sides start fresh per block, in this process,
on the same lines in memory, and alternate block by block (the machine's load falls on both).

- **Drain3**: ``TemplateMiner`` with its defaults (no masking), ``add_log_message`` per raw
  line: it neither parses a header nor masks anything.
- **ours**: ``LogParser`` (format detection, header, timestamp, level) then
  ``LogTemplateMiner.add`` (generic masks, Drain3's tree, word slots, template id) per line.

Then each side runs again under ``tracemalloc`` on the block with the most distinct lines (the
most for caches and clusters to hold), for its peak of Python memory; the timing runs are not
traced. Prints the rates and ``log_parse_lines_per_s_vs_drain3: X`` (our lines per second /
Drain3's).

Last, ``vigil logs analyze`` end to end (``telemetry.logs.analysis.pipeline.analyze_inputs``,
what the command runs) on one file of ``--analyze-system``'s sample perturbed the same way and
repeated to ``--analyze-lines`` (default 200,000): read, parse, mine, windows, type, findings,
without an LLM; prints ``analyze_lines_per_min: X``. With ``--llm-url`` the same file is
analysed again with that LLM (``VIGIL_LOGS_*`` settings, e.g. ``VIGIL_LOGS_LLM_MAX_WINDOWS``)
and ``analyze_lines_per_min_llm: X`` is printed too. ``--only analyze`` skips the parse runs.
"""

import argparse
import csv
import random
import re
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from telemetry.logs.analysis.pipeline import analyze_inputs
from telemetry.logs.analysis.settings import LogAnalysisSettings
from telemetry.logs.detection import LogParser
from telemetry.logs.grouping import loghub_systems
from telemetry.logs.templates import LogTemplateMiner

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "shared" / "data" / "loghub"
PERTURBED_SHARE = 0.9
SEED = 11
DIGIT = re.compile(r"\d")


def system_lines(path: Path, system: str, count: int, rng: random.Random) -> list[str]:
    """``count`` lines of one system: its sample repeated, messages' digits redrawn."""
    raw = (path / system / f"{system}_2k.log").read_text().splitlines()
    with (path / system / f"{system}_2k.log_structured.csv").open(newline="") as stream:
        contents = [row["Content"] for row in csv.DictReader(stream)]
    lines: list[str] = []
    while len(lines) < count:
        for line, content in zip(raw, contents, strict=True):
            if content and line.endswith(content) and rng.random() < PERTURBED_SHARE:
                header = line[: len(line) - len(content)]
                line = header + DIGIT.sub(lambda _: str(rng.randrange(10)), content)
            lines.append(line)
            if len(lines) == count:
                break
    return lines


def run_drain3(lines: list[str]) -> None:
    """Plain Drain3 on raw lines."""
    miner = TemplateMiner(config=TemplateMinerConfig())
    for line in lines:
        miner.add_log_message(line)


def run_ours(lines: list[str]) -> None:
    """Our parser and miner on the same lines, as a stream (``vigil logs detect`` mines so)."""
    parser = LogParser.build()
    miner = LogTemplateMiner()
    for record in parser.parse(enumerate(lines, 1)):
        miner.add(record.first_line)


def seconds(run: Callable[[list[str]], None], lines: list[str]) -> float:
    start = time.perf_counter()
    run(lines)
    return time.perf_counter() - start


def peak_bytes(run: Callable[[list[str]], None], lines: list[str]) -> int:
    tracemalloc.start()
    try:
        run(lines)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def analyze_rate(path: Path, lines: int, llm_url: str | None) -> float:
    """Lines per minute of ``vigil logs analyze`` on ``path`` (with an LLM when given)."""
    settings = LogAnalysisSettings()
    start = time.perf_counter()
    report = analyze_inputs([str(path)], settings, use_llm=llm_url is not None, llm_url=llm_url)
    elapsed = time.perf_counter() - start
    [analysis] = report.files
    print(
        f"analyze{' with LLM' if llm_url else ''}: {lines:,} lines in {elapsed:.1f} s, "
        f"{len(analysis.windows):,} windows, {analysis.input.templates:,} templates, "
        f"{len(analysis.findings)} findings, type {analysis.analysis_type.used}; "
        f"LLM used: {analysis.llm.used} ({analysis.llm.error or 'ok'})"
    )
    return lines / elapsed * 60


def bench_analyze(path: Path, system: str, lines: int, llm_url: str | None) -> None:
    """``analyze_lines_per_min`` (and ``_llm`` with an LLM) on one perturbed file."""
    rng = random.Random(SEED)
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / f"{system}.log"
        log.write_text("\n".join(system_lines(path, system, lines, rng)) + "\n")
        print(f"analyze_lines_per_min: {analyze_rate(log, lines, None):,.0f}")
        if llm_url:
            print(f"analyze_lines_per_min_llm: {analyze_rate(log, lines, llm_url):,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines in all")
    parser.add_argument("--path", type=Path, default=DEFAULT_PATH, help="the Loghub folder")
    parser.add_argument("--analyze-lines", type=int, default=200_000, help="analyze: lines")
    parser.add_argument("--analyze-system", default="OpenSSH", help="analyze: Loghub system")
    parser.add_argument("--llm-url", help="analyze also with this LLM (OpenAI-compatible)")
    parser.add_argument("--only", choices=["parse", "analyze"], help="run one benchmark")
    args = parser.parse_args()
    if args.only != "analyze":
        bench_parse(args.path, args.lines)
    if args.only != "parse":
        bench_analyze(args.path, args.analyze_system, args.analyze_lines, args.llm_url)


def bench_parse(path: Path, lines: int) -> None:
    """Parse + mine against Drain3 (see the module docstring)."""
    systems = loghub_systems(path)
    rng = random.Random(SEED)
    per_system = max(1, lines // len(systems))
    blocks = {system: system_lines(path, system, per_system, rng) for system in systems}
    total = per_system * len(systems)
    print(f"{total:,} lines: {len(systems)} Loghub systems x {per_system:,}")
    totals = {"drain3": 0.0, "ours": 0.0}
    for system, block in blocks.items():
        drain3 = seconds(run_drain3, block)
        ours = seconds(run_ours, block)
        totals["drain3"] += drain3
        totals["ours"] += ours
        print(
            f"{system:>10}: Drain3 {per_system / drain3:>9,.0f} lines/s, "
            f"ours {per_system / ours:>9,.0f} lines/s"
        )
    varied = max(blocks, key=lambda system: len(set(blocks[system])))
    for name, run in (("drain3", run_drain3), ("ours", run_ours)):
        print(
            f"{name:>10}: {total / totals[name]:>9,.0f} lines/s over all, peak Python memory "
            f"{peak_bytes(run, blocks[varied]) / 2**20:,.1f} MiB on {varied}"
        )
    print(f"log_parse_lines_per_s_vs_drain3: {totals['drain3'] / totals['ours']:.2f}")


if __name__ == "__main__":
    main()
