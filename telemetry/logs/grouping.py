"""Grouping accuracy (GA) on Loghub: our parser and miner against plain Drain3, in one run.

GA is LogPAI's: a message is correctly grouped when the set of messages in its predicted
group equals the set in its ground-truth group. Loghub's ``X/X_2k.log`` files are parsed and
mined exactly as ``vigil logs parse`` does (``parse_file`` then ``mine_records``): from raw
lines, and with the LogPAI header format of the system when one is given. The baseline is
Drain3's ``TemplateMiner`` with its defaults on LogPAI's pre-split content.
"""

import csv
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from telemetry.logs.detection import parse_file
from telemetry.logs.templates import LogTemplateMiner, MinedRecord, MinerSettings, mine_records


def grouping_accuracy(truth: Sequence[Hashable], predicted: Sequence[Hashable]) -> float:
    """LogPAI's grouping accuracy.

    Args:
        truth: The ground-truth event of each message.
        predicted: The predicted group of each message (same length).

    Returns:
        The share of messages whose predicted group holds exactly their ground-truth group.

    Raises:
        ValueError: When the sequences differ in length or are empty.
    """
    if len(truth) != len(predicted) or not truth:
        raise ValueError(f"need as many predictions as messages ({len(predicted)} != {len(truth)})")
    truth_sizes = Counter(truth)
    members: dict[Hashable, list[Hashable]] = defaultdict(list)
    for event, group in zip(truth, predicted, strict=True):
        members[group].append(event)
    correct = 0
    for events in members.values():
        first = events[0]
        if truth_sizes[first] == len(events) and all(event == first for event in events):
            correct += len(events)
    return correct / len(truth)


def line_groups(mined: Sequence[MinedRecord], line_count: int) -> list[Hashable]:
    """The template of every line: a multi-line record's lines share its template, and a
    line that made no record (skipped) is a group of its own.

    Args:
        mined: Mined records, in input order.
        line_count: Lines in the input.

    Returns:
        One group per line, in line order.
    """
    groups: list[Hashable] = [("skipped", number) for number in range(1, line_count + 1)]
    starts = [item.record.line for item in mined] + [line_count + 1]
    for item, end in zip(mined, starts[1:], strict=True):
        for number in range(item.record.line, min(end, line_count + 1)):
            groups[number - 1] = item.template.template_id
    return groups


@dataclass(frozen=True)
class SystemAccuracy:
    """GA of one Loghub system: ours from raw lines, ours with its header format, Drain3."""

    system: str
    raw: float
    with_format: float | None
    drain3: float


@dataclass(frozen=True)
class GroundTruth:
    """A system's structured CSV: each line's event id and LogPAI content."""

    events: list[str]
    contents: list[str]


def loghub_systems(path: Path) -> list[str]:
    """The systems under a Loghub folder: ``X/X_2k.log`` beside ``X_2k.log_structured.csv``.

    Args:
        path: The folder holding one folder per system.

    Returns:
        System names, sorted.

    Raises:
        ValueError: When the folder holds no system.
    """
    systems = sorted(
        child.name
        for child in path.iterdir()
        if (child / f"{child.name}_2k.log").is_file()
        and (child / f"{child.name}_2k.log_structured.csv").is_file()
    )
    if not systems:
        raise ValueError(f"{path} holds no Loghub system (X/X_2k.log and X_2k.log_structured.csv)")
    return systems


def read_ground_truth(path: Path, system: str) -> GroundTruth:
    """The events and contents of ``system``'s structured CSV."""
    with (path / system / f"{system}_2k.log_structured.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    return GroundTruth([row["EventId"] for row in rows], [row["Content"] for row in rows])


def read_log_formats(path: Path | None) -> dict[str, str]:
    """LogPAI header formats by system, from a JSON file (``{"HDFS": "<Date> ..."}``)."""
    if path is None:
        return {}
    formats = json.loads(path.read_text())
    if not isinstance(formats, dict):
        raise ValueError(f"{path} must map system names to LogPAI header formats")
    return {str(system): str(log_format) for system, log_format in formats.items()}


def ours_groups(
    log_path: Path, line_count: int, log_format: str | None, settings: MinerSettings
) -> list[Hashable]:
    """Our template of every line of a log file, as ``vigil logs parse`` assigns them."""
    parsed = parse_file(log_path, log_format)
    mined = mine_records(parsed.records, LogTemplateMiner(settings))
    return line_groups(mined, line_count)


def drain3_groups(contents: Sequence[str]) -> list[Hashable]:
    """Plain Drain3 (defaults, no masking) on LogPAI's content: the baseline."""
    miner = TemplateMiner(config=TemplateMinerConfig())
    return [miner.add_log_message(content)["cluster_id"] for content in contents]


def evaluate_system(
    path: Path, system: str, log_format: str | None, settings: MinerSettings
) -> SystemAccuracy:
    """GA of one system, three ways (see ``SystemAccuracy``).

    Args:
        path: The Loghub folder.
        system: The system's name.
        log_format: Its LogPAI header format, or None to skip that run.
        settings: Our miner's settings.

    Returns:
        The three accuracies.
    """
    truth = read_ground_truth(path, system)
    log_path = path / system / f"{system}_2k.log"
    count = len(truth.events)
    with_format = None
    if log_format is not None:
        groups = ours_groups(log_path, count, log_format, settings)
        with_format = grouping_accuracy(truth.events, groups)
    return SystemAccuracy(
        system=system,
        raw=grouping_accuracy(truth.events, ours_groups(log_path, count, None, settings)),
        with_format=with_format,
        drain3=grouping_accuracy(truth.events, drain3_groups(truth.contents)),
    )


def evaluate_loghub(
    path: Path,
    log_formats: dict[str, str],
    systems: Sequence[str] | None = None,
    settings: MinerSettings | None = None,
    on_system: Callable[[str], None] | None = None,
) -> list[SystemAccuracy]:
    """GA of every system under a Loghub folder.

    Args:
        path: The Loghub folder.
        log_formats: LogPAI header formats by system (systems without one get no such run).
        systems: Only these systems (default: all under ``path``).
        settings: Our miner's settings (default ``MinerSettings()``: the same for every system).
        on_system: Called with each system's name before it is evaluated (progress).

    Returns:
        One result per system, in name order.

    Raises:
        ValueError: When a named system is not under ``path``.
    """
    available = loghub_systems(path)
    chosen = list(systems) if systems else available
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise ValueError(f"not under {path}: {', '.join(missing)} (found {', '.join(available)})")
    results = []
    for system in chosen:
        if on_system is not None:
            on_system(system)
        results.append(
            evaluate_system(path, system, log_formats.get(system), settings or MinerSettings())
        )
    return results


def mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values present (None when there is none)."""
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None
