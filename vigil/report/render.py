"""Render ``ReportData`` into one self-contained HTML page (``templates/report.html.j2``).

Charts are inline SVG (``vigil.report.svg``), the style sheet is inline, and there is no
script: the page needs nothing but itself. Each section has a stable id (``SECTION_IDS``).
"""

from datetime import datetime
from pathlib import Path

import jinja2
from markupsafe import Markup

from vigil.report.detection import ARM_COLORS, OTHER_ARM_COLOR
from vigil.report.model import ReportData
from vigil.report.svg import Bar, Lane, Series, bar_chart, line_chart, timeline

TEMPLATE = "report.html.j2"
SECTION_IDS = (
    "data-summary",
    "label-budget",
    "detection",
    "ab-test",
    "drift",
    "timeline",
    "explanations",
)
PSI_STABLE, PSI_ACT = 0.1, 0.3  # the usual reading of PSI (serving.scorer.drift)


def render_report(data: ReportData) -> str:
    """The page's HTML."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        undefined=jinja2.StrictUndefined,
        autoescape=True,
    )
    environment.filters["num"] = _number
    environment.filters["pct"] = _percent
    environment.filters["when"] = _when
    return environment.get_template(TEMPLATE).render(
        report=data, charts=_charts(data), section_ids=SECTION_IDS
    )


def write_report(data: ReportData, path: Path) -> Path:
    """Write the page to ``path`` (its folder is created); returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(data), encoding="utf-8")
    return path


def _charts(data: ReportData) -> dict[str, Markup]:
    charts: dict[str, Markup] = {}
    if data.training is not None:
        budget, splits = data.training.label_budget, data.training.split_sizes
        trainable = splits.get("train", 0) + splits.get("validation", 0)
        charts["budget"] = bar_chart(
            "Labels asked of reviewers vs rows",
            [
                Bar("all feature rows", data.training.rows, "#9aa5b1", f"{data.training.rows:,}"),
                Bar("train + validation rows", trainable, "#9aa5b1", f"{trainable:,}"),
                Bar("uncertain rows", budget.uncertain, "#f2b134", f"{budget.uncertain:,}"),
                Bar("review queue (asked)", budget.asked, "#2f7d32", f"{budget.asked:,}"),
            ],
        )
    curves = [d for d in data.detection if d.roc]
    if curves:
        charts["roc"] = line_chart(
            "ROC (replayed windows)",
            [Series(f"{d.alias}: {d.model} (AUC {d.roc_auc:.3f})", d.color, d.roc) for d in curves],
            "false positive rate",
            "true positive rate",
            diagonal=True,
        )
        charts["pr"] = line_chart(
            "Precision-recall (replayed windows)",
            [Series(f"{d.alias}: {d.model} (AP {d.pr_auc:.3f})", d.color, d.pr) for d in curves],
            "recall",
            "precision",
        )
    if data.ab is not None and data.ab.arms:
        charts["traffic"] = bar_chart(
            "Share of requests per arm",
            [
                Bar(
                    f"{arm.alias}: {arm.model}",
                    arm.traffic_share,
                    ARM_COLORS.get(arm.alias, OTHER_ARM_COLOR),
                    f"{arm.traffic_share:.1%} (weight {data.ab.weights.get(arm.alias, 0)} %)",
                )
                for arm in data.ab.arms
            ],
        )
    if data.drift:
        charts["drift"] = bar_chart(
            f"Top {len(data.drift)} features by PSI",
            [
                Bar(
                    row.feature,
                    row.psi,
                    _psi_color(row.psi),
                    f"{row.psi:.3f}",
                )
                for row in data.drift
            ],
            [(PSI_STABLE, "0.1"), (PSI_ACT, "0.3")],
        )
    if data.timelines:
        lanes = []
        for item in data.timelines:
            lanes.append(Lane(f"{item.instance_id} true incidents", "#d62728", item.true_spans))
            lanes.append(
                Lane(
                    f"{item.instance_id} detected",
                    "#1f77b4",
                    item.detected_spans,
                    item.explained_at,
                )
            )
        charts["timeline"] = timeline(
            "True incidents vs detected windows (○ explained)", lanes, data.start, data.end
        )
    return charts


def _psi_color(value: float) -> str:
    if value > PSI_ACT:
        return "#c0392b"
    return "#f2b134" if value > PSI_STABLE else "#2f7d32"


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _percent(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}%}"


def _when(moment: datetime | None) -> str:
    return "n/a" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"
