"""HTTP routes of the explanation service: /explain, /healthz, /readyz, /metrics.

Threads: /explain's blocking work (embedding, Qdrant, the LLM) runs on the app's own
``CapacityLimiter`` (``explain_concurrency`` threads), and /healthz and /readyz are async and
never take a thread of the shared pool: a burst of explanations stuck on a slow LLM (each until
its deadline) cannot make Kubernetes restart the pod or take it out of its Service.
"""

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, SecretStr

from contracts.auth import api_key_guard
from contracts.explanation import ExplainRequest, ExplainResponse
from rag.analysis import detect_analysis_type
from rag.explainer import Explainer, generic_answer
from rag.metrics import EXPLAIN_REQUESTS

logger = logging.getLogger(__name__)
router = APIRouter()

# What /readyz requires. The LLM is reported beside them but never required: without it
# /explain still answers, from retrieval (the designed degraded answer), so a pod whose LLM is
# down must stay in its Service rather than leave the scorer with no explainer at all.
REQUIRED_CHECKS = ("qdrant", "embedding_model")


class Probe:
    """One blocking readiness check, run in its own thread, never more than one run at a time.

    A caller waits at most ``timeout_s``. A run still going (a socket that never answers,
    Qdrant's lock held) keeps its one thread, and the next caller waits on that same run
    instead of starting another: a stuck dependency cannot pile up threads.
    """

    def __init__(self, name: str, check: Callable[[], str]) -> None:
        self._check = check
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"readyz-{name}")
        self._running: Future[str] | None = None

    async def run(self, timeout_s: float) -> str:
        """``ok …`` or ``failed: …``; never raises."""
        # Only the event loop's thread gets here, and nothing is awaited in between: no lock.
        if self._running is None or self._running.done():
            self._running = self._executor.submit(self._checked)
        running = self._running
        try:
            with anyio.fail_after(timeout_s):
                # shield: a caller that gives up must not cancel the run others may wait on.
                return await asyncio.shield(asyncio.wrap_future(running))
        except TimeoutError:
            return f"failed: no answer within {timeout_s:g} s"

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _checked(self) -> str:
        try:
            return self._check()
        except Exception as error:
            return f"failed: {type(error).__name__}: {error}"


@dataclass
class ReadinessProbes:
    """The checks /readyz reports, each a ``Probe``."""

    probes: dict[str, Probe]

    @classmethod
    def of(cls, explainer: Explainer) -> "ReadinessProbes":
        return cls(
            {
                "qdrant": Probe("qdrant", lambda: f"ok ({explainer.kb.count()} points)"),
                "embedding_model": Probe(
                    "embedding_model",
                    lambda: f"ok ({explainer.embedder.encode(['ready']).shape[1]}-dim)",
                ),
                "llm": Probe("llm", explainer.llm.ping),
            }
        )

    async def check(self, timeout_s: float) -> dict[str, str]:
        """Every check at once, each within ``timeout_s``."""
        checks: dict[str, str] = {}

        async def run(name: str, probe: Probe) -> None:
            checks[name] = await probe.run(timeout_s)

        async with anyio.create_task_group() as group:
            for name, probe in self.probes.items():
                group.start_soon(run, name, probe)
        return {name: checks[name] for name in self.probes}

    def close(self) -> None:
        for probe in self.probes.values():
            probe.close()


# Dependencies are async so that resolving them takes no worker thread either.
async def get_explainer(request: Request) -> Explainer:
    explainer: Explainer = request.app.state.explainer
    return explainer


async def get_explain_limiter(request: Request) -> anyio.CapacityLimiter:
    limiter: anyio.CapacityLimiter = request.app.state.explain_limiter
    return limiter


async def get_probes(request: Request) -> ReadinessProbes:
    probes: ReadinessProbes = request.app.state.probes
    return probes


ExplainerDep = Annotated[Explainer, Depends(get_explainer)]
ExplainLimiterDep = Annotated[anyio.CapacityLimiter, Depends(get_explain_limiter)]
ProbesDep = Annotated[ReadinessProbes, Depends(get_probes)]


def _expected_key(request: Request) -> SecretStr | None:
    key: SecretStr | None = request.app.state.explainer.settings.api_key
    return key


def _count_rejected() -> None:
    EXPLAIN_REQUESTS.labels(outcome="error").inc()


require_api_key = api_key_guard(_expected_key, on_reject=_count_rejected)


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]


@router.post(
    "/explain",
    dependencies=[Depends(require_api_key)],
    responses={
        400: {"description": "Body is not decodable (e.g. not UTF-8)"},
        401: {"description": "Missing or wrong API key"},
        413: {"description": "Too large"},
    },
)
async def explain(
    body: ExplainRequest, explainer: ExplainerDep, limiter: ExplainLimiterDep
) -> ExplainResponse:
    """Explain an anomaly: root cause, impact, actions and prevention, grounded in retrieval."""
    return await anyio.to_thread.run_sync(_explain, explainer, body, limiter=limiter)


def _explain(explainer: Explainer, body: ExplainRequest) -> ExplainResponse:
    try:
        response = explainer.explain(body)
    except Exception as error:  # a valid request never gets a 5xx
        logger.exception("explain failed")
        EXPLAIN_REQUESTS.labels(outcome="error").inc()
        analysis_type = detect_analysis_type(body.top_features, body.log_lines)
        return generic_answer(analysis_type, f"internal error: {type(error).__name__}")
    EXPLAIN_REQUESTS.labels(outcome="degraded" if response.degraded else "ok").inc()
    return response


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(explainer: ExplainerDep, probes: ProbesDep) -> JSONResponse:
    """Readiness: Qdrant answers and the embedding model encodes; the LLM is reported only."""
    checks = await probes.check(explainer.settings.readiness_timeout_s)
    ready = all(checks[name].startswith("ok") for name in REQUIRED_CHECKS)
    body = Readiness(ready=ready, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(explainer: ExplainerDep) -> Response:
    """Prometheus metrics of the service."""
    try:
        explainer.kb.count()  # refreshes qdrant_collection_size
    except Exception:
        logger.warning("could not read the collection size", exc_info=True)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
