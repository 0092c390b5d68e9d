"""The GitHub workflows: actionlint clean, actions pinned by SHA, least privilege, bounded."""

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.conftest import REPO_PATH

WORKFLOWS_PATH = REPO_PATH / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOWS_PATH.glob("*.yml"))
ACTIONLINT = Path(sys.executable).with_name("actionlint")


def load(path: Path) -> dict[Any, Any]:
    workflow = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow  # type: ignore[no-any-return]


def test_actionlint_is_clean() -> None:
    result = subprocess.run(
        [str(ACTIONLINT), "-no-color", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        cwd=REPO_PATH,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_are_pinned_by_sha_with_their_version(path: Path) -> None:
    for line in path.read_text().splitlines():
        if "uses:" in line:
            assert re.search(r"uses: [\w./-]+@[0-9a-f]{40} # v\d", line), line.strip()


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_permissions_timeouts_and_concurrency_are_set(path: Path) -> None:
    workflow = load(path)
    assert workflow["permissions"] == {"contents": "read"}
    assert "group" in workflow["concurrency"]
    for name, job in workflow["jobs"].items():
        assert 0 < job["timeout-minutes"] <= 180, name
        # Only jobs that talk to AWS get an OIDC token; nothing may write the repository.
        permissions = job.get("permissions", {})
        assert set(permissions.values()) <= {"read", "write"}, name
        assert all(v == "read" for k, v in permissions.items() if k != "id-token"), name


def test_no_long_lived_aws_keys() -> None:
    for path in WORKFLOWS:
        text = path.read_text()
        assert "AWS_ACCESS_KEY_ID" not in text, path.name
        assert "aws-secret-access-key" not in text, path.name


def test_retrain_triggers() -> None:
    triggers = load(WORKFLOWS_PATH / "retrain.yml")["on"]
    assert triggers["schedule"] == [{"cron": "0 2 * * 0"}]
    assert triggers["repository_dispatch"] == {"types": ["retrain"]}
    assert "workflow_dispatch" in triggers


def test_ci_runs_the_suite_then_deploys_through_staging_and_a_canary() -> None:
    ci = load(WORKFLOWS_PATH / "ci.yml")
    jobs = ci["jobs"]
    assert any(step.get("run") == "make test" for step in jobs["test"]["steps"])
    assert "--cov-fail-under=80" in str(jobs["test"]["steps"])
    assert jobs["deploy-staging"]["needs"] == "images"
    assert jobs["deploy-production"]["needs"] == "integration-staging"
    canary = str(jobs["deploy-production"]["steps"])
    assert "for percent in 10 30 50 100" in canary
    assert "helm rollback" in canary
