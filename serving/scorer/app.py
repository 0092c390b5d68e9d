"""The scorer's HTTP side: ``/metrics`` for Prometheus, ``POST /feedback`` and
``POST /feedback/batch`` (behind the API key), ``/healthz`` and ``/readyz``; ``run_scorer``
serves it with uvicorn while the scoring loop and the alias watcher run beside it."""

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, SecretStr

from contracts.auth import api_key_guard
from contracts.settings import Settings, get_settings
from serving.scorer.feedback import (
    IDEMPOTENCY_KEY_HEADER,
    FeedbackBatchCreate,
    FeedbackBatchPublic,
    FeedbackCreate,
    FeedbackPublic,
    IdempotencyKey,
)
from serving.scorer.feedback_recorder import FeedbackError
from serving.scorer.loop import replay, run_periodically, watch_aliases
from serving.scorer.scorer import Scorer, build_scorer
from serving.scorer.settings import ScorerSettings, get_scorer_settings

logger = logging.getLogger(__name__)
router = APIRouter()
# The write routes: create_app puts them behind the scorer's API key.
feedback_router = APIRouter()
# Set on an answer kept from an earlier request with the same Idempotency-Key.
REPLAYED_HEADER = "Idempotent-Replayed"


def get_scorer(request: Request) -> Scorer:
    scorer: Scorer = request.app.state.scorer
    return scorer


ScorerDep = Annotated[Scorer, Depends(get_scorer)]


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(scorer: ScorerDep) -> Response:
    """Prometheus metrics of this scorer."""
    return Response(generate_latest(scorer.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _expected_key(request: Request) -> SecretStr | None:
    return get_scorer(request).settings.api_key


IdempotencyHeader = Annotated[
    IdempotencyKey | None,
    Header(
        alias=IDEMPOTENCY_KEY_HEADER,
        description="A key of the caller's choosing (a UUID): a retry with it gets the first "
        "answer back and stores nothing again.",
    ),
]
Responses = dict[int | str, dict[str, Any]]
UNAUTHORIZED: Responses = {401: {"description": "No API key, or a wrong one (X-API-Key or Bearer)"}}
CONFLICT: Responses = {409: {"description": "The Idempotency-Key was used for another request"}}


def _http_error(error: FeedbackError) -> Exception:
    if error.field is not None:  # shaped like every other 422, as the schema documents
        problem = {"type": "value_error", "loc": ("body", error.field), "msg": str(error)}
        return RequestValidationError([problem])
    return HTTPException(status_code=error.status, detail=str(error))


@feedback_router.post(
    "/feedback",
    responses={
        400: {"description": "Body is not decodable (e.g. not UTF-8)"},
        404: {"description": "The instance was not scored in that window"},
        **UNAUTHORIZED,
        **CONFLICT,
    },
)
def feedback(
    body: FeedbackCreate,
    scorer: ScorerDep,
    response: Response,
    idempotency_key: IdempotencyHeader = None,
) -> FeedbackPublic:
    """Record a ground-truth label for one instance and scored window."""
    try:
        answer, replayed = scorer.feedback.record(body, idempotency_key)
    except FeedbackError as error:
        raise _http_error(error) from error
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return answer


@feedback_router.post(
    "/feedback/batch",
    responses={
        400: {"description": "Body is not decodable (e.g. not UTF-8)"},
        **UNAUTHORIZED,
        **CONFLICT,
    },
)
def feedback_batch(
    body: FeedbackBatchCreate,
    scorer: ScorerDep,
    response: Response,
    idempotency_key: IdempotencyHeader = None,
) -> FeedbackBatchPublic:
    """Record up to 1,000 labels at once; invalid ones are reported per item, the rest stored.

    A body that breaks the schema (a label of 2, a missing field, more than 1,000 labels) is
    refused whole (422) and nothing is stored. A schema-valid label that would be refused
    alone (its window is not a window start, the instance was not scored in it, or it repeats
    an earlier item) is listed in ``rejected`` with that status (422 or 404) and not stored;
    the others are stored in one Parquet file (per window day) and listed in ``accepted``.
    An idempotency key (header or body field) is required: a retry with it gets the same
    answer back (with ``Idempotent-Replayed: true``) and stores nothing new.
    """
    key = idempotency_key or body.idempotency_key
    if key is None or (body.idempotency_key not in (None, key)):
        message = (
            "differs from the Idempotency-Key header"
            if key is not None
            else f"an {IDEMPOTENCY_KEY_HEADER} header or an idempotency_key field is required"
        )
        problem = {"type": "value_error", "loc": ("body", "idempotency_key"), "msg": message}
        raise RequestValidationError([problem])
    try:
        answer, replayed = scorer.feedback.record_batch(body, key)
    except FeedbackError as error:
        raise _http_error(error) from error
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return answer


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
        watcher = threading.Thread(
            target=watch_aliases, args=(scorer, stop), name="aliases", daemon=True
        )
        if periodic or scorer.settings.replay_start is not None:
            loop.start()
        if periodic and scorer.settings.alias_check_seconds > 0:
            watcher.start()
        yield
        stop.set()
        for thread in (loop, watcher):
            if thread.is_alive():
                thread.join(timeout=30)

    app = FastAPI(
        title="Vigil online scorer",
        version="0.1.0",
        description="Scores the fleet every window; metrics, drift, feedback.",
        lifespan=lifespan,
    )
    app.include_router(router)
    # The key is the scorer's own, read per request; each refusal is counted on its metrics.
    guard = api_key_guard(_expected_key, on_reject=scorer.metrics.feedback_unauthorized.inc)
    app.include_router(feedback_router, dependencies=[Depends(guard)])
    return app


def run_scorer(
    settings: ScorerSettings | None = None, store_settings: Settings | None = None
) -> None:
    """Score every window as it closes and serve the app, until interrupted."""
    settings = settings or get_scorer_settings()
    if settings.api_key is None:
        logger.warning("VIGIL_SCORER_API_KEY is not set: POST /feedback accepts any caller")
    scorer = build_scorer(settings, store_settings or get_settings())
    try:
        uvicorn.run(create_app(scorer, periodic=True), host=settings.host, port=settings.port)
    finally:
        scorer.close()
