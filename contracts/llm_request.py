"""The one chat request Vigil sends an LLM: OpenAI-compatible chat completions whose reply must
fit a JSON schema (vLLM in production, llama.cpp locally, any OpenAI-compatible endpoint for
log analysis). ``response_format: json_schema`` needs vLLM ≥ 0.6.0 (tests/ops/test_vllm_request.py).
"""

from typing import Any

import openai
from openai.types.chat import ChatCompletion


def json_schema_completion(
    client: openai.OpenAI,
    *,
    model: str,
    system: str,
    user: str,
    schema_name: str,
    schema: dict[str, Any],
    max_tokens: int,
    temperature: float,
) -> ChatCompletion:
    """One chat completion constrained to ``schema``.

    Raises:
        openai.APIError: the server failed or timed out.
    """
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        max_tokens=max_tokens,
        temperature=temperature,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": schema_name, "schema": schema, "strict": True},
        },
    )
