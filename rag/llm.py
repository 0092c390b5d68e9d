"""The LLM behind an OpenAI-compatible API (vLLM in production, llama.cpp locally)."""

import json
import re
import time
from dataclasses import dataclass
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.llm_request import json_schema_completion
from rag.metrics import LLM_REQUEST_DURATION, LLM_TOKENS_GENERATED
from rag.settings import RagSettings

_CODE_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


class LLMAnswer(BaseModel):
    """The part of an explanation the LLM writes."""

    model_config = ConfigDict(extra="ignore")

    root_cause: str = Field(min_length=1, max_length=2_000)
    impact: str = Field(min_length=1, max_length=2_000)
    actions: list[str] = Field(min_length=1, max_length=10)
    prevention: list[str] = Field(default_factory=list, max_length=10)


class LLMError(Exception):
    """The LLM could not be reached, timed out, or never gave a valid answer."""


class LLMReplyError(LLMError):
    """The LLM answered, but no reply was a valid answer (cut off, not JSON, fields missing)."""


def parse_answer(text: str) -> LLMAnswer:
    """Validate the model's reply, tolerating code fences and text around the JSON object.

    Raises:
        ValueError: when no JSON object with the required fields can be found.
    """
    data = extract_json(text)
    try:
        return LLMAnswer.model_validate(_strip_strings(data))
    except ValidationError as error:
        raise ValueError(f"LLM reply misses required fields: {error}") from error


def extract_json(text: str) -> Any:
    """The first JSON value in the reply, inside a code fence or followed by other text.

    Raises:
        ValueError: when the reply holds no parsable JSON object.
    """
    fenced = _CODE_FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    start = candidate.find("{")
    if start < 0:
        raise ValueError("no JSON object in the LLM reply")
    try:
        data, _ = json.JSONDecoder().raw_decode(candidate[start:])  # ignores trailing text
    except json.JSONDecodeError as error:
        raise ValueError(f"LLM reply is not valid JSON: {error}") from error
    return data


@dataclass
class LLMClient:
    """Chat completions with a JSON-schema response format, a timeout and bounded retries."""

    client: openai.OpenAI
    model: str
    max_tokens: int
    temperature: float
    attempts: int
    timeout_s: float  # per attempt
    deadline_s: float  # all attempts

    def explain(self, system: str, user: str) -> LLMAnswer:
        """Ask for an explanation; retries once (by default) on a timeout or an invalid reply,
        all attempts within ``deadline_s``.

        Raises:
            LLMReplyError: when the LLM replied but no reply was a valid answer.
            LLMError: when no attempt got a reply or the deadline passed; the message says why.
        """
        reasons = []
        replied = False
        deadline = time.monotonic() + self.deadline_s
        for _ in range(self.attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reasons.append(f"no answer within the {self.deadline_s:g} s deadline")
                break
            started = time.perf_counter()
            try:
                reply = self.complete(system, user, min(self.timeout_s, remaining))
                replied = True
                return parse_answer(reply)
            except (openai.APIError, ValueError) as error:
                reasons.append(f"{type(error).__name__}: {error}")
            finally:
                LLM_REQUEST_DURATION.observe(time.perf_counter() - started)
        raise (LLMReplyError if replied else LLMError)("; ".join(reasons))

    def ping(self) -> str:
        """``ok (<models>)`` when the server answers its model list; raises otherwise."""
        models = self.client.with_options(timeout=2.0, max_retries=0).models.list()
        return f"ok ({', '.join(m.id for m in models.data)})"

    def complete(self, system: str, user: str, timeout_s: float | None = None) -> str:
        """One chat completion's text, unparsed (no retry), within ``timeout_s`` (default: the
        OpenAI client's timeout).

        Raises:
            openai.APIError: the server failed or timed out.
            ValueError: the reply was empty.
        """
        client = self.client if timeout_s is None else self.client.with_options(timeout=timeout_s)
        response = json_schema_completion(
            client,
            model=self.model,
            system=system,
            user=user,
            schema_name="explanation",
            schema=_answer_schema(),
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        )
        if response.usage is not None:
            LLM_TOKENS_GENERATED.observe(response.usage.completion_tokens)
        content = response.choices[0].message.content if response.choices else None
        if not content:
            raise ValueError("empty LLM reply")
        return content


def make_llm_client(settings: RagSettings) -> LLMClient:
    """An LLM client for the configured OpenAI-compatible server (no request is made)."""
    api_key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else "not-needed"
    client = openai.OpenAI(
        base_url=settings.llm_base_url,
        api_key=api_key,
        timeout=settings.llm_timeout_s,
        max_retries=0,  # retries are counted by LLMClient, invalid replies included
    )
    return LLMClient(
        client,
        settings.llm_model,
        settings.llm_max_tokens,
        settings.llm_temperature,
        attempts=1 + settings.llm_max_retries,
        timeout_s=settings.llm_timeout_s,
        deadline_s=settings.llm_deadline_s,
    )


def _answer_schema() -> dict[str, Any]:
    # String length bounds would make llama.cpp's grammar sampling crawl; max_tokens bounds the
    # reply instead.
    sentence = {"type": "string"}
    steps = {"type": "array", "items": sentence, "minItems": 1, "maxItems": 4}
    return {
        "type": "object",
        "properties": {
            "root_cause": sentence,
            "impact": sentence,
            "actions": steps,
            "prevention": steps,
        },
        "required": ["root_cause", "impact", "actions", "prevention"],
        "additionalProperties": False,
    }


def _strip_strings(data: Any) -> Any:
    """Trim strings and blank out those without a letter or digit ("...", "-"), and drop them
    from lists, so filler fails validation."""
    if isinstance(data, dict):
        return {k: _strip_strings(v) for k, v in data.items()}
    if isinstance(data, list):
        return [s for s in (_strip_strings(v) for v in data) if s != ""]
    if isinstance(data, str):
        return data.strip() if any(c.isalnum() for c in data) else ""
    return data
