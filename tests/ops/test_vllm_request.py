"""The explainer's LLM request fits the vLLM the chart deploys.

rag/llm.py asks for ``response_format: {"type": "json_schema", ...}``, which vLLM accepts since
v0.6.0 (vllm-project/vllm PR #7654); the chart once pinned v0.5.4, which refuses that type.
The request body is built by rag/llm.py's own code path (the OpenAI client serialises it; an
in-process transport captures it, so no server is called) and validated against an excerpt of
the pinned version's request schema, committed in tests/ops/data.
"""

import copy
import json
from typing import Any

import httpx2
import jsonschema
import pytest
import yaml
from packaging.version import Version

from rag.llm import make_llm_client
from rag.settings import RagSettings
from tests.ops.conftest import CHART_PATH, REPO_PATH

SCHEMA_PATH = REPO_PATH / "tests" / "ops" / "data" / "vllm_chat_completion_request.schema.json"
# The first vLLM release whose OpenAI server accepts response_format type json_schema.
JSON_SCHEMA_SINCE = Version("0.6.0")
_REPLY = {
    "root_cause": "disk full on /var",
    "impact": "writes fail",
    "actions": ["free space on /var"],
    "prevention": ["alert at 80 % disk use"],
}


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())  # type: ignore[no-any-return]


def _chart_vllm_tag() -> str:
    values = yaml.safe_load((CHART_PATH / "values.yaml").read_text())
    return str(values["vllm"]["image"]["tag"])


def _chat_completion(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    return httpx2.Response(
        200,
        json={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": json.dumps(_REPLY)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
        },
    )


@pytest.fixture(scope="module")
def explain_request() -> dict[str, Any]:
    """The body rag/llm.py posts to /v1/chat/completions for one explanation."""
    captured: list[httpx2.Request] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        captured.append(request)
        return _chat_completion(request)

    settings = RagSettings(llm_base_url="http://vllm.invalid/v1", llm_model="llama-2-7b-chat")
    llm = make_llm_client(settings)
    llm.client = llm.client.with_options(
        http_client=httpx2.Client(transport=httpx2.MockTransport(handle))
    )
    answer = llm.explain("You explain anomalies.", "CPU at 100 % on i-0abc.")
    assert answer.root_cause == _REPLY["root_cause"]
    (request,) = captured
    assert request.method == "POST"
    assert request.url.path == "/v1/chat/completions"
    return json.loads(request.content)  # type: ignore[no-any-return]


def test_the_explainers_request_fits_the_pinned_vllm_schema(
    explain_request: dict[str, Any],
) -> None:
    jsonschema.Draft202012Validator(_schema()).validate(explain_request)
    response_format = explain_request["response_format"]
    assert response_format["type"] == "json_schema"
    assert set(response_format["json_schema"]) == {"name", "schema", "strict"}


def test_vllm_before_json_schema_would_refuse_it(explain_request: dict[str, Any]) -> None:
    """The check has teeth: v0.5.4's ResponseFormat (text, json_object) refuses the request."""
    older = copy.deepcopy(_schema())
    older["$defs"]["ResponseFormat"]["properties"]["type"] = {"enum": ["text", "json_object"]}
    with pytest.raises(jsonschema.ValidationError, match="json_schema"):
        jsonschema.Draft202012Validator(older).validate(explain_request)


def test_chart_pins_a_vllm_with_json_schema_and_the_excerpts_version() -> None:
    tag = _chart_vllm_tag()
    assert tag.startswith("v"), tag
    assert Version(tag.removeprefix("v")) >= JSON_SCHEMA_SINCE, tag
    # A new tag means a new excerpt: the schema names the version it was written from.
    assert _schema()["$id"].startswith(f"vllm-{tag}/"), (tag, _schema()["$id"])
