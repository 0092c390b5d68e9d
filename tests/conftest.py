from collections.abc import Iterator
from pathlib import Path

import pytest

from vigil.processes import ServerProcess, start_mlflow, start_moto


@pytest.fixture(autouse=True)
def _aws_test_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials so boto3 never looks for real ones; the emulator accepts any."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def aws_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A fresh moto server on loopback speaking the real S3 / CloudWatch wire protocols."""
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real MLflow tracking server on loopback (SQLite backend, local artifact root)."""
    root = tmp_path_factory.mktemp("mlflow")
    server = start_mlflow(root, root)
    yield server
    server.stop()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Attach the logs of the servers a failed test used to its report."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        for name in getattr(item, "fixturenames", []):
            server = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if isinstance(server, ServerProcess):
                report.sections.append((f"{server.name} log", server.log()[-5000:]))


def data_root() -> Path:
    """The shared public datasets (../shared/data from the repository root)."""
    return Path(__file__).resolve().parents[2] / "shared" / "data"
