"""The demo's HTML report, built from a small but real world laid out like the demo's folder.

The world: the labelled test fleet (``tests.training.conftest``) trained and registered in the
demo's local MLflow, served by Triton behind the nginx A/B router (``vigil.local_stack``),
replayed by the scorer through the router with the explanation service answering (the real
service; its LLM is unreachable, so answers are the retrieval-only fallback), ground-truth
feedback sent and the A/B report written. ``vigil report`` then rebuilds the page from that
folder as a user would, and Debian's Chromium opens it.
"""

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from mlflow import MlflowClient

from contracts.features import LOG_TEMPLATE_COLUMNS, feature_columns
from contracts.serving import CHALLENGER, CHAMPION
from rag.embeddings import load_embedder
from rag.explainer import Explainer
from rag.indexing import index_knowledge
from rag.knowledge_base import open_knowledge_base
from rag.llm import make_llm_client
from rag.service import create_app as create_rag_app
from rag.settings import RagSettings
from serving.router.ab_config import load_ab_config
from serving.scorer.ab_report import ab_report_from_store, write_ab_report
from serving.scorer.app import create_app as create_scorer_app
from serving.scorer.loop import replay
from serving.scorer.scorer import Scorer
from serving.scorer.served_models import load_served_models
from serving.scorer.settings import ScorerSettings
from telemetry.validation import validate_features
from telemetry.validation_report import write_report
from tests.serving.conftest import NO_GATES
from tests.serving.scorer_helpers import serve_in_thread
from tests.training.conftest import METRICS, START, fleet_frames, small_config, write_fleet_store
from tests.vigil.browser import chromium_missing, open_page
from tests.vigil.test_cli import succeed
from training.pipeline import run_training
from vigil.demo.replay import send_feedback
from vigil.demo.report import rebuild_demo_report
from vigil.demo.run import DemoConfig
from vigil.local_stack import start_local_mlflow, start_serving
from vigil.processes import free_port
from vigil.report.model import DataSummary, DriftRow, ExplanationCard, ReportData
from vigil.report.publish import REPORT_ARTIFACT_PATH
from vigil.report.render import SECTION_IDS, render_report
from vigil.stack import stop_stack

pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.xdist_group("report")]

WINDOW = timedelta(minutes=5)
EXPLAIN_THRESHOLD = 0.5  # the small test models seldom pass the production 0.85
EXTERNAL = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
URL_ATTRIBUTES = {"src", "href", "xlink:href", "action", "srcset", "poster", "data", "formaction"}


@dataclass(frozen=True)
class World:
    config: DemoConfig
    tracking_uri: str
    start: datetime
    end: datetime


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The demo's folder after training, serving, a replay with explanations and feedback."""
    root = tmp_path_factory.mktemp("report-world")
    config = DemoConfig(work_path=root / "demo", report_path=root / "reports" / "demo.html")
    store = write_fleet_store(config.store_path)
    features = feature_columns(METRICS)
    for key in store.list_keys("processed-logs/", "features.parquet"):
        report = validate_features(pl.DataFrame(store.read_table(key)), features)
        write_report(store, key, report)
    start = START
    end = START + timedelta(minutes=fleet_frames()[0]["timestamp"].n_unique())
    stack = config.stack_path
    try:
        mlflow = start_local_mlflow(stack)
        summary = run_training(
            store, small_config(gates=NO_GATES), mlflow.url, config.work_path / "runs" / "1"
        )
        assert summary.registration is not None, summary.registration_error
        serving = start_serving(stack, mlflow.url)
        served = load_served_models(mlflow.url)
        with serve_in_thread(create_rag_app(explainer=_degraded_explainer(root))) as rag_url:
            settings = ScorerSettings(
                window_seconds=int(WINDOW.total_seconds()),
                tracking_uri=mlflow.url,
                inference_url=f"127.0.0.1:{serving.router_grpc_port}",
                ab_router_url=serving.router.url,
                explain_url=rag_url,
                explain_threshold=EXPLAIN_THRESHOLD,
            )
            scorer = Scorer(settings, store, served)
            try:
                replay(scorer, start, end)
                assert scorer.dispatcher is not None
                assert scorer.dispatcher.wait_idle(120)
                with serve_in_thread(create_scorer_app(scorer)) as scorer_url:
                    send_feedback(store, scorer_url, start, end, WINDOW, end - start)
            finally:
                scorer.close()
        weights = load_ab_config()
        ab = ab_report_from_store(
            store,
            served,
            {CHAMPION: weights.champion_weight, CHALLENGER: weights.challenger_weight},
            start,
            end,
        )
        write_ab_report(ab, config.work_path / "reports")
        yield World(config, mlflow.url, start, end)
    finally:
        stop_stack(stack)


def _degraded_explainer(root: Path) -> Explainer:
    """The real explanation service's core over the packaged runbooks, with its LLM down."""
    settings = RagSettings(
        qdrant_path=root / "qdrant",
        llm_base_url=f"http://127.0.0.1:{free_port()}/v1",
        llm_max_retries=0,
        llm_timeout_s=2,
    )
    embedder = load_embedder()
    kb = open_knowledge_base(settings)
    index_knowledge(kb, embedder, runbooks_path=settings.runbooks_path, store=None)
    return Explainer(settings, embedder, kb, make_llm_client(settings))


@pytest.fixture(scope="module")
def page(world: World) -> Path:
    """``vigil report`` rebuilt from the demo's folder, as a user runs it."""
    output = succeed(
        "report",
        "--work-dir",
        str(world.config.work_path),
        "--out",
        str(world.config.report_path),
    )
    assert str(world.config.report_path) in output
    return world.config.report_path


def test_the_report_holds_every_section_with_real_numbers(page: Path) -> None:
    html = page.read_text()
    assert "<script" not in html
    sections = {name: _section(html, name) for name in SECTION_IDS}
    assert "<b>6</b>instances" in sections["data-summary"]
    assert "quality score raw n/a %, features " in sections["data-summary"]
    assert "review queue (asked)" in sections["label-budget"]
    # Both arms, each with its curves and confusion matrix against ground truth.
    for alias in (CHAMPION, CHALLENGER):
        assert f"<h3>{alias}: " in sections["detection"]
        assert f"{alias}: " in sections["ab-test"]
    assert "ROC (replayed windows)" in sections["detection"]
    assert "Chi-square test" in sections["ab-test"] or "not computable" in sections["ab-test"]
    assert "Top 15 features by PSI" in sections["drift"]
    # Every log-template feature is listed whatever its rank; this fleet has no logs.
    log_patterns = sections["drift"].split("<h3>Log patterns</h3>", 1)[1]
    assert log_patterns.count("<tr><td>log_") == len(LOG_TEMPLATE_COLUMNS)
    assert "no template (no logs)" in log_patterns
    assert "true incidents" in sections["timeline"]
    cards = sections["explanations"]
    assert cards.count('<article class="card">') >= 1
    assert "degraded" in cards  # the service answered without its LLM
    assert "runbook: " in cards  # with the runbook sections it retrieved


def test_the_report_is_logged_to_the_champions_training_run(page: Path, world: World) -> None:
    client = MlflowClient(world.tracking_uri)
    run_id = load_served_models(world.tracking_uri).champion.run_id
    logged = [a.path for a in client.list_artifacts(run_id, REPORT_ARTIFACT_PATH)]
    assert f"{REPORT_ARTIFACT_PATH}/{page.name}" in logged


def test_the_report_rebuilds_when_the_demo_stack_is_stopped(
    page: Path, world: World, tmp_path: Path
) -> None:
    """After ``vigil demo --once`` nothing runs: the rebuild starts MLflow on the registry."""
    copy = DemoConfig(work_path=tmp_path / "demo", report_path=tmp_path / "again.html")
    # The copy has no stack state, so no running service is found for it.
    shutil.copytree(
        world.config.work_path, copy.work_path, ignore=shutil.ignore_patterns("state.json", "nginx")
    )
    rebuilt = rebuild_demo_report(copy)
    assert rebuilt.path == copy.report_path
    assert _section(rebuilt.path.read_text(), "ab-test") == _section(page.read_text(), "ab-test")
    assert rebuilt.run_id == load_served_models(world.tracking_uri).champion.run_id
    assert rebuilt.artifact == f"{REPORT_ARTIFACT_PATH}/again.html"


def test_the_report_references_no_external_url(page: Path) -> None:
    html = page.read_text()
    assert _links("<img src='https://cdn.example/x.png'>") == ["https://cdn.example/x.png"]
    external = [link for link in _links(html) if EXTERNAL.match(link)]
    assert external == []
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", html, re.IGNORECASE)  # CSS
    assert "@import" not in html


@pytest.mark.skipif(chromium_missing() is not None, reason=chromium_missing() or "")
def test_chromium_renders_every_section_without_console_errors(page: Path, tmp_path: Path) -> None:
    probe = (
        f"JSON.stringify({json.dumps(list(SECTION_IDS))}.map(id => {{"
        "  const s = document.getElementById(id);"
        "  return s ? [id, s.innerText.trim().length, s.querySelectorAll('svg').length,"
        "              s.getBoundingClientRect().height] : [id, -1, 0, 0];"
        "}))"
    )
    visit = open_page(page.resolve().as_uri(), probe, tmp_path)

    assert visit.errors == []
    assert all(url.startswith(("file://", "data:")) for url in visit.requested), visit.requested
    rendered = {name: (text, svgs, height) for name, text, svgs, height in json.loads(visit.probe)}
    assert set(rendered) == set(SECTION_IDS)
    for name, (text, _, height) in rendered.items():
        assert text > 40, f"section {name} is (nearly) empty"
        assert height > 50, f"section {name} takes no space"
    for charted in ("label-budget", "detection", "ab-test", "drift", "timeline"):
        assert rendered[charted][1] >= 1, f"section {charted} drew no chart"

    screenshot = tmp_path / "report.png"
    screenshot.write_bytes(visit.screenshot)
    assert visit.screenshot.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(visit.screenshot[16:20]), int.from_bytes(visit.screenshot[20:24])
    assert width >= 800
    assert height > 1500  # the whole page, not one viewport
    assert len(visit.screenshot) > 50_000


def empty_report() -> ReportData:
    moment = datetime(2024, 1, 1, tzinfo=UTC)
    return ReportData(
        generated_at=moment,
        start=moment,
        end=moment + timedelta(hours=1),
        window_minutes=5,
        run_id="0" * 32,
        arms={CHAMPION: "xgboost_anomaly v1"},
        data=DataSummary(
            dataset="fleet",
            metrics=16,
            raw_files=0,
            raw_rows=0,
            feature_files=0,
            feature_rows=0,
            feature_columns=0,
            instances=0,
            first=None,
            last=None,
            incidents=0,
            incidents_by_type={},
            incidents_in_range=0,
            quality=None,
        ),
        training=None,
        detection=[],
        ab=None,
        drift=[],
        drift_features=0,
        log_drift=[],
        timelines=[],
        explanations=[],
        explanations_total=0,
    )


def test_sections_say_plainly_when_a_source_has_no_data() -> None:
    html = render_report(empty_report())
    for section in SECTION_IDS:
        assert 'class="empty"' in _section(html, section), f"{section} does not say it is empty"
    assert "No explanation was received" in html
    assert "<svg" not in html


def test_log_patterns_and_log_evidence_are_shown_with_their_templates() -> None:
    template = "Unhandled <*> in GET <PATH>"
    card = ExplanationCard(
        instance_id="i-0abc",
        window_start=datetime(2024, 1, 1, tzinfo=UTC),
        score=0.97,
        model="xgboost_anomaly",
        top_features=["cpu_utilization"],
        log_evidence=[f"novel ERROR ×3 (usually 0): {template}"],
        analysis_type="performance",
        root_cause="a bad deployment",
        impact="errors",
        actions=["roll back"],
        prevention=[],
        sources=[],
        degraded=False,
        degraded_reason=None,
        complete=True,
    )
    drift = [DriftRow("cpu_utilization", 0.02, 0.01)]
    report = replace(
        empty_report(),
        drift=drift,
        drift_features=1,
        log_drift=[DriftRow("log_template_1_sum_15", 0.4, 0.2, template)],
        explanations=[card],
        explanations_total=1,
    )
    html = render_report(report)
    escaped = template.replace("<", "&lt;").replace(">", "&gt;")
    patterns = _section(html, "drift").split("<h3>Log patterns</h3>", 1)[1]
    assert f"<td>log_template_1_sum_15</td><td><code>{escaped}</code></td>" in patterns
    assert f"novel ERROR ×3 (usually 0): {escaped}" in _section(html, "explanations")


def _section(html: str, name: str) -> str:
    return html.split(f'<section id="{name}">', 1)[1].split("</section>", 1)[0]


def _links(html: str) -> list[str]:
    """Every URL-bearing attribute value of the page."""

    class Collector(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.values: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            for name, value in attrs:
                if value is not None and name in URL_ATTRIBUTES:
                    self.values.append(value)

    collector = Collector()
    collector.feed(html)
    return collector.values
