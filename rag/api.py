"""HTTP routes of the explanation service: /explain, /healthz, /readyz, /metrics."""

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from contracts.explanation import ExplainRequest, ExplainResponse
from rag.analysis import detect_analysis_type
from rag.explainer import Explainer, generic_answer
from rag.metrics import EXPLAIN_REQUESTS

logger = logging.getLogger(__name__)
router = APIRouter()


def get_explainer(request: Request) -> Explainer:
    explainer: Explainer = request.app.state.explainer
    return explainer


ExplainerDep = Annotated[Explainer, Depends(get_explainer)]


def require_api_key(
    explainer: ExplainerDep,
    x_api_key: Annotated[
        str | None, Header(description="Required when the service has a key.")
    ] = None,
) -> None:
    expected = explainer.settings.api_key
    if expected is None:
        return
    if x_api_key is None or not secrets.compare_digest(x_api_key, expected.get_secret_value()):
        EXPLAIN_REQUESTS.labels(outcome="error").inc()
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key header")


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
def explain(body: ExplainRequest, explainer: ExplainerDep) -> ExplainResponse:
    """Explain an anomaly: root cause, impact, actions and prevention, grounded in retrieval."""
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
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(explainer: ExplainerDep) -> JSONResponse:
    """Readiness: Qdrant answers, the embedding model encodes, the LLM server answers."""
    checks: dict[str, str] = {}
    for name, probe in (
        ("qdrant", lambda: f"ok ({explainer.kb.count()} points)"),
        ("embedding_model", lambda: f"ok ({explainer.embedder.encode(['ready']).shape[1]}-dim)"),
        ("llm", lambda: explainer.llm.ping()),
    ):
        try:
            checks[name] = probe()
        except Exception as error:
            checks[name] = f"failed: {type(error).__name__}: {error}"
    ready = all(value.startswith("ok") for value in checks.values())
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
