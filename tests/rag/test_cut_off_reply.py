"""A reply the LLM cut off at its token limit is an unusable answer, not a failed call.

A small model can run on inside one JSON string until ``max_tokens`` stops it: the reply
arrives, but it is not JSON. The explainer must say the answer was unusable (the LLM did
answer) and fall back to the runbook, as it does for a reply that breaks the answer checks.
Real Qdrant local mode and the real embedding model; the LLM is a stub OpenAI-compatible server
on loopback that always answers with a truncated object, as llama.cpp does at its limit.
"""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from contracts.explanation import ExplainRequest
from rag.embeddings import Embedder
from rag.knowledge_base import KnowledgeBase
from rag.settings import RUNBOOKS_PATH
from tests.rag.conftest import make_explainer, make_settings
from tests.rag.test_readiness import _body

pytestmark = pytest.mark.xdist_group("rag")

CUT_OFF = '{\n  "root_cause": "The database connection pool is exhausted because the the the'


class _CutOffHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = {
            "id": "cut-off",
            "object": "chat.completion",
            "created": 0,
            "model": "stub",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": CUT_OFF},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 384, "total_tokens": 394},
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def cut_off_llm() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CutOffHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_a_reply_cut_off_at_the_token_limit_is_unusable_not_failed(
    cut_off_llm: str,
    embedder: Embedder,
    indexed: tuple[KnowledgeBase, object],
    tmp_path: Path,
) -> None:
    explainer = make_explainer(make_settings(tmp_path, cut_off_llm), embedder, indexed[0])
    answer = explainer.explain(ExplainRequest.model_validate(_body()))
    assert answer.degraded
    reason = answer.degraded_reason or ""
    assert reason.startswith("LLM answer unusable: "), reason
    assert "not valid JSON" in reason
    assert answer.actions
    database_runbook = (RUNBOOKS_PATH / "database.md").read_text()
    assert all(action in database_runbook for action in answer.actions)
