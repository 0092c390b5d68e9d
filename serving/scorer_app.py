"""The scorer's HTTP side: ``/metrics`` for Prometheus, ``POST /feedback``, ``/healthz`` and
``/readyz``; ``run_scorer`` serves it with uvicorn while the scoring loop runs beside it."""

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from contracts.settings import Settings, get_settings
from serving.feedback import FeedbackCreate, FeedbackPublic
from serving.scorer import FeedbackError, Scorer, build_scorer, replay, run_periodically
from serving.scorer_settings import ScorerSettings, get_scorer_settings

logger = logging.getLogger(__name__)
router = APIRouter()


def get_scorer(request: Request) -> Scorer:
    scorer: Scorer = request.app.state.scorer
    return scorer


ScorerDep = Annotated[Scorer, Depends(get_scorer)]


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(scorer: ScorerDep) -> Response:
    """Prometheus metrics of this scorer."""
    return Response(generate_latest(scorer.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.post(
    "/feedback",
    responses={
        400: {"description": "Body is not decodable (e.g. not UTF-8)"},
        404: {"description": "The instance was not scored in that window"},
    },
)
def feedback(body: FeedbackCreate, scorer: ScorerDep) -> FeedbackPublic:
    """Record a ground-truth label for one instance and scored window."""
    try:
        return scorer.record_feedback(body)
    except FeedbackError as error:
        if error.field is not None:  # shaped like every other 422, as the schema documents
            problem = {"type": "value_error", "loc": ("body", error.field), "msg": str(error)}
            raise RequestValidationError([problem]) from error
        raise HTTPException(status_code=error.status, detail=str(error)) from error


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


class Readiness(BaseModel):
    ready: bool
    inference_url: str


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(scorer: ScorerDep) -> JSONResponse:
    """Readiness: the inference endpoint answers."""
    ready = scorer.client.is_ready()
    body = Readiness(ready=ready, inference_url=scorer.settings.inference_url)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


def _replay_then_score(scorer: Scorer, stop: threading.Event, periodic: bool) -> None:
    """Replay the configured past range first (if any), then score windows as they close."""
    settings = scorer.settings
    if settings.replay_start is not None:
        end = settings.replay_end or datetime.now(UTC)
        try:
            replay(scorer, settings.replay_start, end, settings.replay_pace_seconds)
        except Exception:  # a failed replay must not stop the scoring of new windows
            logger.exception("the replay from %s stopped", settings.replay_start.isoformat())
    if periodic:
        run_periodically(scorer, stop)


def create_app(scorer: Scorer, *, periodic: bool = False) -> FastAPI:
    """The scorer's app; with ``periodic`` its lifespan runs the scoring loop in a thread."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.scorer = scorer
        stop = threading.Event()
        loop = threading.Thread(
            target=_replay_then_score, args=(scorer, stop, periodic), name="scoring", daemon=True
        )
        if periodic or scorer.settings.replay_start is not None:
            loop.start()
        yield
        stop.set()
        if loop.is_alive():
            loop.join(timeout=30)

    app = FastAPI(
        title="Vigil online scorer",
        version="0.1.0",
        description="Scores the fleet every window; metrics, drift, feedback.",
        lifespan=lifespan,
    )
    app.include_router(router)
    return app


def run_scorer(
    settings: ScorerSettings | None = None, store_settings: Settings | None = None
) -> None:
    """Score every window as it closes and serve the app, until interrupted."""
    settings = settings or get_scorer_settings()
    scorer = build_scorer(settings, store_settings or get_settings())
    try:
        uvicorn.run(create_app(scorer, periodic=True), host=settings.host, port=settings.port)
    finally:
        scorer.close()
