"""The shared API-key check: constant-time match, 401 without or with a wrong key, open only
when no key is configured."""

from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import SecretStr

from contracts.auth import API_KEY_HEADER, api_key_guard, key_matches


def test_key_matches_only_the_configured_key() -> None:
    key = SecretStr("s3cret-token")
    assert key_matches(key, "s3cret-token")
    assert not key_matches(key, "s3cret-tokeN")
    assert not key_matches(key, "")
    assert not key_matches(key, None)
    assert key_matches(None, None)  # no key configured: open


def _client(key: SecretStr | None, rejected: list[int]) -> TestClient:
    app = FastAPI()
    app.state.key = key

    def expected(request: Request) -> SecretStr | None:
        return request.app.state.key  # type: ignore[no-any-return]

    guard = api_key_guard(expected, on_reject=lambda: rejected.append(1))

    @app.post("/write", dependencies=[Depends(guard)])
    def write() -> dict[str, str]:
        return {"written": "yes"}

    return TestClient(app)


def test_guard_rejects_missing_and_wrong_keys_and_counts_them() -> None:
    rejected: list[int] = []
    client = _client(SecretStr("k-123"), rejected)
    assert client.post("/write").status_code == 401
    wrong = client.post("/write", headers={API_KEY_HEADER: "k-124"})
    assert wrong.status_code == 401
    assert "k-123" not in wrong.text
    assert client.post("/write", headers={API_KEY_HEADER: "k-123"}).json() == {"written": "yes"}
    assert client.post("/write", headers={"Authorization": "Bearer k-123"}).status_code == 200
    assert client.post("/write", headers={"Authorization": "Basic k-123"}).status_code == 401
    assert len(rejected) == 3


def test_guard_is_open_without_a_configured_key() -> None:
    assert _client(None, []).post("/write").status_code == 200
