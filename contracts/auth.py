"""The API key every write endpoint requires (feedback, the retrain relay, explain): the header
that carries it, the key it has in the Kubernetes Secret, and the constant-time check.

A caller sends ``X-API-Key: <key>``, or ``Authorization: Bearer <key>`` (what Alertmanager's
webhook ``http_config.authorization`` sends)."""

import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Header, HTTPException, Request
from pydantic import SecretStr

API_KEY_HEADER = "X-API-Key"
SECRET_KEY = "api-key"  # the key of the token inside the chart's Secret

ExpectedKey = Callable[[Request], SecretStr | None]


def key_matches(expected: SecretStr | None, given: str | None) -> bool:
    """True when no key is configured, or ``given`` equals it (compared in constant time)."""
    if expected is None:
        return True
    if given is None:
        return False
    return secrets.compare_digest(given.encode(), expected.get_secret_value().encode())


def api_key_guard(
    expected_of: ExpectedKey, on_reject: Callable[[], None] | None = None
) -> Callable[..., None]:
    """A FastAPI dependency answering 401 unless the request carries the configured key."""

    def guard(
        request: Request,
        api_key: Annotated[
            str | None,
            Header(alias=API_KEY_HEADER, description="Required when the service has a key."),
        ] = None,
        authorization: Annotated[
            str | None, Header(description="Or `Bearer <key>`, as Alertmanager sends it.")
        ] = None,
    ) -> None:
        if api_key is None and authorization is not None:
            scheme, _, token = authorization.partition(" ")
            api_key = token.strip() if scheme.lower() == "bearer" else None
        if key_matches(expected_of(request), api_key):
            return
        if on_reject is not None:
            on_reject()
        raise HTTPException(status_code=401, detail=f"missing or wrong {API_KEY_HEADER} header")

    return guard
