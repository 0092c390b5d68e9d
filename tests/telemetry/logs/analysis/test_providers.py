"""The hosted providers through their official SDKs. Their APIs cannot be reached from here,
so each SDK talks to an in-process transport that answers as the API does: the tests check
the request we send (model, schema, key) and what we make of the answers and the failures.
The OpenAI-compatible path runs against the real llama.cpp server in
``tests/telemetry/test_logs_analyze_llm.py``."""

import json
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from telemetry.logs.analysis.llm import (
    AnthropicProvider,
    LLMAnswerError,
    LLMUnavailableError,
    OpenAIProvider,
    make_provider,
    parse_answer,
)
from telemetry.logs.analysis.prompts import answer_schema
from telemetry.logs.analysis.settings import LogAnalysisSettings

KEY = "sk-test-0123456789abcdef"
ANSWER = {"findings": [], "ranking": ["D1"]}
Handler = Callable[[httpx2.Request], httpx2.Response]


def anthropic_provider(handler: Handler) -> AnthropicProvider:
    client = anthropic.Anthropic(
        api_key=KEY, http_client=httpx2.Client(transport=httpx2.MockTransport(handler))
    )
    return AnthropicProvider(client, "claude-test", None, 256, KEY)


def openai_provider(handler: Handler) -> OpenAIProvider:
    client = openai.OpenAI(
        api_key=KEY,
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    return OpenAIProvider(client, "gpt-test", "openai", None, 256, 0.1, KEY)


def test_anthropic_gets_the_schema_as_output_format_and_its_text_is_the_answer() -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen["body"] = json.loads(request.content)
        seen["key"] = request.headers.get("x-api-key") or request.headers.get("authorization")
        return httpx2.Response(
            200,
            json={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-test",
                "content": [{"type": "text", "text": json.dumps(ANSWER)}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": 10, "output_tokens": 5},
            },
        )

    reply = anthropic_provider(handler).complete("system", "user", answer_schema(["D1"], [5]))
    assert parse_answer(reply).ranking == ["D1"]
    body = seen["body"]
    assert (body["model"], body["system"], body["max_tokens"]) == ("claude-test", "system", 256)
    schema = body["output_config"]["format"]
    assert schema["type"] == "json_schema"
    # Array bounds Anthropic's structured outputs refuse are left to our own checks.
    assert "maxItems" not in json.dumps(schema)
    assert KEY in seen["key"]


def test_openai_gets_a_strict_json_schema_response_format() -> None:
    seen: dict[str, Any] = {}

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen["body"] = json.loads(request.content)
        return httpx2.Response(
            200,
            json={
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": "gpt-test",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": json.dumps(ANSWER)},
                    }
                ],
            },
        )

    reply = openai_provider(handler).complete("system", "user", answer_schema([], [5]))
    assert parse_answer(reply).findings == []
    response_format = seen["body"]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, LLMAnswerError), (401, LLMUnavailableError), (503, LLMUnavailableError)],
)
def test_failures_say_whether_to_stop_and_never_show_the_key(
    status: int, error: type[Exception]
) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            status, json={"error": {"message": f"Incorrect API key provided: {KEY}"}}
        )

    for provider in (openai_provider(handler), anthropic_provider(handler)):
        with pytest.raises(error) as raised:
            provider.complete("system", "user", answer_schema([], [1]))
        assert KEY not in str(raised.value)


def test_hosted_providers_need_a_model_and_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(LLMUnavailableError, match="VIGIL_LOGS_LLM_MODEL"):
        make_provider(LogAnalysisSettings(llm_provider="anthropic"))
    keyless = make_provider(LogAnalysisSettings(llm_provider="anthropic", llm_model="claude-test"))
    assert isinstance(keyless, AnthropicProvider)
    unused = httpx2.Client(transport=httpx2.MockTransport(lambda _: httpx2.Response(500)))
    keyless.client = anthropic.Anthropic(http_client=unused)  # no key from anywhere
    with pytest.raises(LLMUnavailableError, match="ANTHROPIC_API_KEY"):
        keyless.complete("system", "user", answer_schema([], [1]))
    with pytest.raises(LLMUnavailableError, match="OPENAI_API_KEY"):
        make_provider(LogAnalysisSettings(llm_provider="openai", llm_model="gpt-test"))
    provider = make_provider(
        LogAnalysisSettings(llm_provider="anthropic", llm_model="claude-test", llm_api_key=KEY)
    )
    assert (provider.name, provider.model) == ("anthropic", "claude-test")
    assert KEY not in repr(LogAnalysisSettings(llm_api_key=KEY))
