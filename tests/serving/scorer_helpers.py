"""Helpers of the scorer tests: a real HTTP server in a thread, metric scraping, and a scorer
with no inference server behind it."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from contracts.detector import fit_detector
from contracts.serving import CHAMPION, XGBOOST_MODEL
from contracts.store import ObjectStore
from serving.scorer.scorer import Scorer
from serving.scorer.served_models import Arm, ServedModels
from serving.scorer.settings import ScorerSettings
from vigil.processes import free_port


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def scrape(base_url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics``: (name, labels) -> value."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples[(name, frozenset(labels.items()))]


def offline_scorer(store: ObjectStore, feature_names: list[str]) -> Scorer:
    """A real scorer over ``store`` whose champion expects ``feature_names``, with no MLflow
    and no inference server (nothing listens at its inference URL): for what it does before
    or without inference (reading windows, feedback, its HTTP API)."""
    settings = ScorerSettings(inference_url=f"127.0.0.1:{free_port()}")
    rows = np.random.default_rng(0).random((50, len(feature_names)))
    models = ServedModels(
        arms={CHAMPION: Arm(CHAMPION, XGBOOST_MODEL, 1, 0.5, "run")},
        detector=fit_detector(rows, feature_names, [], np.arange(50)),
        reference={"features": {}},
        explainer=None,
    )
    return Scorer(settings, store, models)
