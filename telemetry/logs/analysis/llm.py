"""The LLM behind the analysis: any OpenAI-compatible server, OpenAI, or Anthropic.

- ``openai_compatible`` (default): llama.cpp locally, vLLM in production, through the
  ``openai`` SDK with the server's base URL; JSON-schema response format.
- ``openai``: the OpenAI API through the same SDK at its default URL.
- ``anthropic``: the Anthropic API through the ``anthropic`` SDK, with a JSON-schema output
  format.

Keys come from ``VIGIL_LOGS_LLM_API_KEY`` or the SDK's own variable; a key never appears in a
message this module raises (``redact``). Each request is one attempt: a window whose request
fails is reported, and an unreachable provider stops the requests of every later window.
"""

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

import anthropic
import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from contracts.llm_request import json_schema_completion
from contracts.log_analysis import LLMProviderName, Severity
from telemetry.logs.analysis.settings import LOCAL_LLM_BASE_URL, LogAnalysisSettings

_CODE_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
# Things that look like API keys (OpenAI, Anthropic, bearer tokens) in an SDK's error text.
_KEY_LIKE = re.compile(r"\b(?:sk|sk-ant|sk-proj|key)-[A-Za-z0-9_\-*.]{6,}")


class LLMUnavailableError(RuntimeError):
    """The provider cannot answer (unreachable, timed out, refused the key): stop asking."""


class LLMAnswerError(ValueError):
    """The provider answered, but not with a usable answer."""


class AnswerFinding(BaseModel):
    """One finding as the LLM proposes it (checked against the window in ``merge``)."""

    model_config = ConfigDict(extra="ignore")

    title: str
    severity: Severity
    lines: list[int] = Field(min_length=1)
    likely_cause: str = ""
    actions: list[str] = Field(default_factory=list)
    confidence: float = 0.5

    @field_validator("confidence")
    @classmethod
    def _clamp(cls, value: float) -> float:
        return 0.5 if math.isnan(value) else min(1.0, max(0.0, value))


class Answer(BaseModel):
    """The LLM's answer for one window, and what of it could not be read."""

    model_config = ConfigDict(extra="ignore")

    findings: list[AnswerFinding] = Field(default_factory=list)
    ranking: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    dropped: int = Field(default=0, description="Findings that did not follow the schema.")


def parse_answer(text: str) -> Answer:
    """The answer in a reply, tolerating code fences, text around the JSON object, a reply
    cut short by ``max_tokens`` (its complete findings are kept), and findings that do not
    follow the schema (each dropped, with the reason in ``problems``).

    Raises:
        LLMAnswerError: When the reply holds no JSON object with a findings list.
    """
    fenced = _CODE_FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    start = candidate.find("{")
    if start < 0:
        raise LLMAnswerError("no JSON object in the reply")
    problems = []
    try:
        data, _ = json.JSONDecoder().raw_decode(candidate[start:])
    except json.JSONDecodeError as error:
        data = complete_truncated(candidate[start:])
        if data is None:
            raise LLMAnswerError(f"the reply is not valid JSON: {error}") from error
        problems.append("the reply was cut short; its complete part was read")
    if not isinstance(data, dict) or not isinstance(data.get("findings", []), list):
        raise LLMAnswerError("the reply is not an object with a findings list")
    findings = []
    for position, item in enumerate(data.get("findings", [])):
        try:
            findings.append(AnswerFinding.model_validate(item))
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "finding"
            problems.append(
                f"finding {position + 1} does not follow the schema ({where}: {first['msg']})"
            )
    ranking = data.get("ranking", [])
    ranked = (
        [item for item in ranking if isinstance(item, str)] if isinstance(ranking, list) else []
    )
    dropped = len(data.get("findings", [])) - len(findings)
    return Answer(findings=findings, ranking=ranked, problems=problems, dropped=dropped)


def complete_truncated(text: str) -> Any:
    """The JSON of a reply cut short (``max_tokens``): everything up to its last complete
    object or array, with the brackets still open closed; None when nothing is complete.

    A finding cut in the middle is dropped; the findings before it are kept.
    """
    closes = [position for position, _ in _outside_strings(text) if text[position] in "}]"]
    for position in reversed(closes):
        prefix = text[: position + 1]
        stack = _open_brackets(prefix)
        if stack is None:
            continue
        try:
            return json.loads(prefix + "".join("}" if b == "{" else "]" for b in reversed(stack)))
        except json.JSONDecodeError:
            continue
    return None


def _outside_strings(text: str) -> list[tuple[int, str]]:
    """Positions and characters of ``text`` that are not inside a JSON string."""
    found = []
    in_string = escaped = False
    for position, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        else:
            found.append((position, char))
    return found


def _open_brackets(prefix: str) -> list[str] | None:
    stack: list[str] = []
    for _, char in _outside_strings(prefix):
        if char in "{[":
            stack.append(char)
        elif char in "}]" and (not stack or stack.pop() + char not in ("{}", "[]")):
            return None
    return stack


class Provider(Protocol):
    """An LLM that answers a system and a user message with JSON of a schema."""

    @property
    def name(self) -> LLMProviderName:
        """The provider's name in settings."""

    @property
    def model(self) -> str:
        """The model asked."""

    @property
    def base_url(self) -> str | None:
        """Where it is reached (None: the SDK's default)."""

    def complete(self, system: str, user: str, schema: dict[str, Any]) -> str:
        """The reply's text.

        Raises:
            LLMUnavailableError: The provider cannot be reached or refuses the request.
            LLMAnswerError: The reply is empty.
        """


@dataclass
class OpenAIProvider:
    """Chat completions with a JSON-schema response format (OpenAI, vLLM, llama.cpp)."""

    client: openai.OpenAI
    model: str
    name: LLMProviderName
    base_url: str | None
    max_tokens: int
    temperature: float
    secret: str | None

    def complete(self, system: str, user: str, schema: dict[str, Any]) -> str:
        """The reply's text (see ``Provider.complete``)."""
        try:
            response = json_schema_completion(
                self.client,
                model=self.model,
                system=system,
                user=user,
                schema_name="log_findings",
                schema=schema,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
            )
        except openai.APIError as error:
            status = getattr(error, "status_code", None)
            raise _failure(error, status, self.secret) from error
        content = response.choices[0].message.content if response.choices else None
        if not content:
            raise LLMAnswerError("empty reply")
        return content


@dataclass
class AnthropicProvider:
    """Messages with a JSON-schema output format (the Anthropic API; its current models
    take no ``temperature``, so the setting does not apply)."""

    client: anthropic.Anthropic
    model: str
    base_url: str | None
    max_tokens: int
    secret: str | None
    name: LLMProviderName = "anthropic"

    def complete(self, system: str, user: str, schema: dict[str, Any]) -> str:
        """The reply's text (see ``Provider.complete``)."""
        try:
            message = self.client.messages.create(
                model=self.model,
                max_tokens=self.max_tokens,
                system=system,
                messages=[{"role": "user", "content": user}],
                output_config={
                    "format": {"type": "json_schema", "schema": anthropic_schema(schema)}
                },
            )
        except anthropic.APIError as error:
            status = getattr(error, "status_code", None)
            raise _failure(error, status, self.secret) from error
        except TypeError as error:  # the SDK's word for "no credentials" (at request time)
            raise LLMUnavailableError(
                "no Anthropic credentials: set VIGIL_LOGS_LLM_API_KEY or ANTHROPIC_API_KEY"
            ) from error
        text = "".join(getattr(block, "text", "") for block in message.content)
        if not text:
            raise LLMAnswerError("empty reply")
        return text


def _failure(error: Exception, status: int | None, secret: str | None) -> Exception:
    """What an SDK error means here: a 400 or 422 refuses this request (this window's answer
    is lost), anything else (connection, timeout, 401, 429, 5xx) the provider."""
    message = redact(f"{type(error).__name__}: {error}", secret)
    if status in (400, 422):
        return LLMAnswerError(f"refused: {message}")
    return LLMUnavailableError(message)


def anthropic_schema(schema: Any) -> Any:
    """The schema without the array bounds Anthropic's structured outputs do not take
    (``maxItems``, ``minItems`` above 1); the answer's checks enforce them instead."""
    if isinstance(schema, dict):
        return {
            key: anthropic_schema(value)
            for key, value in schema.items()
            if key != "maxItems" and not (key == "minItems" and value > 1)
        }
    if isinstance(schema, list):
        return [anthropic_schema(value) for value in schema]
    return schema


def redact(text: str, secret: str | None) -> str:
    """``text`` with the key, and anything shaped like a key, replaced by ``***``."""
    if secret:
        text = text.replace(secret, "***")
    return _KEY_LIKE.sub("***", text)


def make_provider(settings: LogAnalysisSettings, base_url: str | None = None) -> Provider:
    """The configured provider (one request at most: the model list of an OpenAI-compatible
    server when no model is configured).

    Args:
        settings: Provider, model, key, timeouts.
        base_url: Overrides ``settings.llm_base_url`` (``--llm-url``).

    Returns:
        The provider.

    Raises:
        LLMUnavailableError: No key for a hosted API, no model named for one, or a server that
            does not answer its model list.
    """
    url = base_url or settings.llm_base_url
    secret = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    kind = settings.llm_provider
    if kind == "anthropic":
        if settings.llm_model is None:
            raise LLMUnavailableError("set VIGIL_LOGS_LLM_MODEL to an Anthropic model name")
        client = anthropic.Anthropic(
            api_key=secret, base_url=url, timeout=settings.llm_timeout_s, max_retries=0
        )
        return AnthropicProvider(
            client,
            settings.llm_model,
            url,
            settings.llm_max_tokens,
            secret,
        )
    if kind == "openai_compatible":
        url = url or LOCAL_LLM_BASE_URL
        secret_or_placeholder = secret or "not-needed"  # llama.cpp and vLLM may run keyless
    else:
        secret_or_placeholder = secret  # type: ignore[assignment]
    try:
        client_ = openai.OpenAI(
            api_key=secret_or_placeholder,
            base_url=url,
            timeout=settings.llm_timeout_s,
            max_retries=0,
        )
    except openai.OpenAIError as error:
        raise LLMUnavailableError(
            "no OpenAI API key: set VIGIL_LOGS_LLM_API_KEY or OPENAI_API_KEY"
        ) from error
    model = settings.llm_model
    if model is None:
        if kind == "openai":
            raise LLMUnavailableError("set VIGIL_LOGS_LLM_MODEL to an OpenAI model name")
        model = server_model(client_, url, secret)
    return OpenAIProvider(
        client_, model, kind, url, settings.llm_max_tokens, settings.llm_temperature, secret
    )


def server_model(client: openai.OpenAI, url: str | None, secret: str | None) -> str:
    """The first model an OpenAI-compatible server lists (llama.cpp and single-model vLLM
    serve one).

    Raises:
        LLMUnavailableError: The server does not answer, or lists no model.
    """
    try:
        models = client.with_options(timeout=10.0).models.list()
    except openai.APIError as error:
        raise LLMUnavailableError(redact(f"{url} unreachable: {error}", secret)) from error
    if not models.data:
        raise LLMUnavailableError(f"{url} lists no model")
    return models.data[0].id
