"""Line-level evaluation of the log anomaly detector on a labelled Loghub BGL file.

Each raw BGL line starts with its alert label (``-`` for a normal line); the label is cut off
before anything else sees the line and is used only for scoring. The detector and two
baselines run on the same records in the same pass:

- ``keyword``: a line whose message contains an error word (``ERROR_WORDS``, any case);
- ``rare_template``: a line whose template has been seen at most ``RARE_TEMPLATE_MAX`` times
  so far, itself included (streaming, with the same miner as the detector).
"""

import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from telemetry.logs.anomalies import DetectorSettings, WindowedRecord, detect
from telemetry.logs.detection import LogParser
from telemetry.logs.reading import ReadStats, read_lines
from telemetry.logs.records import LogRecord
from telemetry.logs.templates import LogTemplateMiner

ERROR_WORDS = re.compile(r"error|fail|fatal|exception|critical|severe|panic", re.IGNORECASE)
RARE_TEMPLATE_MAX = 10
NORMAL_LABEL = "-"


@dataclass(frozen=True)
class Scores:
    """Line-level precision, recall and F1 of one method."""

    method: str
    precision: float
    recall: float
    f1: float
    flagged: int


@dataclass(frozen=True)
class LabelledLog:
    """A labelled log: its lines without the label, and whether each line is an alert."""

    lines: list[tuple[int, str]]
    alerts: list[bool]


def split_labels(path: Path) -> LabelledLog:
    """The lines of a BGL-style file with their leading label cut off.

    Args:
        path: The labelled log.

    Returns:
        The numbered lines (label removed) and, per line, whether its label is an alert.

    Raises:
        ValueError: When the file has no labelled line.
    """
    lines: list[tuple[int, str]] = []
    alerts: list[bool] = []
    for number, text in read_lines(path, ReadStats()):
        label, _, rest = text.partition(" ")
        lines.append((number, rest))
        alerts.append(label != NORMAL_LABEL)
    if not lines:
        raise ValueError(f"{path} has no labelled line")
    return LabelledLog(lines, alerts)


def score(method: str, flagged: Sequence[bool], alerts: Sequence[bool]) -> Scores:
    """Precision, recall and F1 of per-line flags against per-line alert labels."""
    true_positives = sum(1 for flag, alert in zip(flagged, alerts, strict=True) if flag and alert)
    flagged_count = sum(flagged)
    alert_count = sum(alerts)
    precision = true_positives / flagged_count if flagged_count else 0.0
    recall = true_positives / alert_count if alert_count else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(method, precision, recall, f1, flagged_count)


def line_flags(
    lines: Sequence[tuple[int, str]], records: Sequence[LogRecord], flagged: set[int]
) -> list[bool]:
    """Per line: whether the record holding it (keyed by its first line) is flagged."""
    starts = [record.line for record in records]
    return [
        (index := bisect_right(starts, number) - 1) >= 0 and starts[index] in flagged
        for number, _ in lines
    ]


def evaluate_anomalies(path: Path, settings: DetectorSettings | None = None) -> list[Scores]:
    """The detector and both baselines on a labelled log, in one pass over its records.

    Args:
        path: A BGL-style labelled log (``BGL_2k.log``).
        settings: The detector's thresholds (its defaults without).

    Returns:
        Scores of ``detector``, ``keyword`` and ``rare_template``, in that order.
    """
    labelled = split_labels(path)
    records = list(LogParser.build().parse(labelled.lines))
    miner = LogTemplateMiner()
    templated = [
        WindowedRecord(record, miner.add(record.first_line).template_id) for record in records
    ]
    seen: Counter[int] = Counter()
    rare = set()
    for item in templated:
        seen[item.template_id] += 1
        if seen[item.template_id] <= RARE_TEMPLATE_MAX:
            rare.add(item.record.line)
    flagged = {
        "detector": {alert.line for alert in detect(templated, settings)},
        "keyword": {record.line for record in records if ERROR_WORDS.search(record.message)},
        "rare_template": rare,
    }
    return [
        score(method, line_flags(labelled.lines, records, lines), labelled.alerts)
        for method, lines in flagged.items()
    ]
