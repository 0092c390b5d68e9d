"""The Dockerfiles: hadolint clean, multi-stage, pinned bases, non-root, healthchecks."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.conftest import REPO_PATH

DOCKERFILES = sorted((REPO_PATH / "docker").glob("*.Dockerfile"))
HADOLINT = Path(sys.executable).with_name("hadolint")


def test_one_image_per_part() -> None:
    assert [p.name for p in DOCKERFILES] == [
        "rag.Dockerfile",
        "serving.Dockerfile",
        "training.Dockerfile",
    ]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(path: Path) -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_multi_stage_non_root_and_checked(path: Path) -> None:
    text = path.read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)", text, re.MULTILINE)
    assert base
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base[1])
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users
    assert users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK ", text, re.MULTILINE)
    assert not re.search(
        r"(?i)^(ENV|ARG)\s+\S*(TOKEN|SECRET|PASSWORD|ACCESS_KEY)", text, re.MULTILINE
    )
