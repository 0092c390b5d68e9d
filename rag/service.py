"""The explanation service: the FastAPI app factory and the server ``vigil rag serve`` runs."""

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from contracts.ports import EXPLAINER_PORT
from rag.api import ReadinessProbes, router
from rag.embeddings import load_embedder
from rag.explainer import Explainer
from rag.knowledge_base import open_knowledge_base
from rag.llm import make_llm_client
from rag.metrics import EXPLAIN_REQUESTS
from rag.settings import RagSettings, get_rag_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def build_explainer(settings: RagSettings) -> Explainer:
    """Load the embedding model, open Qdrant and the LLM client the settings point at."""
    kb = open_knowledge_base(settings)
    embedder = load_embedder(settings.embedding_model_path, settings.embedding_batch_size)
    return Explainer(settings, embedder, kb, make_llm_client(settings))


def create_app(settings: RagSettings | None = None, explainer: Explainer | None = None) -> FastAPI:
    """The app; builds its ``Explainer`` at startup unless one is given (tests share one)."""
    settings = settings or (explainer.settings if explainer else get_rag_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = explainer is None
        app.state.explainer = explainer or build_explainer(settings)
        # /explain's own threads: a burst of slow explanations waits here, not in the pool
        # every other route shares (rag.api).
        app.state.explain_limiter = anyio.CapacityLimiter(settings.explain_concurrency)
        app.state.probes = ReadinessProbes.of(app.state.explainer)
        yield
        app.state.probes.close()
        if owned:
            app.state.explainer.kb.client.close()

    app = FastAPI(
        title="Vigil explanation service",
        version="0.1.0",
        description="Grounded root-cause explanations of anomalies (RAG over logs and runbooks).",
        lifespan=lifespan,
    )
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _count_invalid)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    return app


async def _count_invalid(request: Request, error: Exception) -> Response:
    EXPLAIN_REQUESTS.labels(outcome="error").inc()
    assert isinstance(error, RequestValidationError)
    return await request_validation_exception_handler(request, error)


class BodySizeLimit:
    """Answer 413 to a request whose body exceeds ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_bytes:
                await self._reject(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        EXPLAIN_REQUESTS.labels(outcome="error").inc()
        response = JSONResponse(
            {"detail": f"request body larger than {self.max_bytes} bytes"}, status_code=413
        )
        await response(scope, receive, send)


def serve(
    host: str = "127.0.0.1", port: int = EXPLAINER_PORT, settings: RagSettings | None = None
) -> None:
    """``vigil rag serve``: run the API with uvicorn until interrupted."""
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
