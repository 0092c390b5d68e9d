"""Drill: 50 clients for a minute through the A/B router to Triton fail nothing and leave the
memory of every service where it was."""

from pathlib import Path

import psutil
import pytest

from serving.loadtest.run import run_loadtest
from vigil.processes import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("triton")]

# Allocators keep some of what a burst used; growth beyond this is a leak worth a look.
MEMORY_SLACK = 1.25
MEMORY_SLACK_BYTES = 64 * 2**20


def _resident_bytes(server: ServerProcess) -> int:
    """Resident memory of the server and every process it started (Triton's backend stubs,
    nginx's workers)."""
    root = psutil.Process(server.process.pid)
    return sum(process.memory_info().rss for process in [root, *root.children(recursive=True)])


def test_fifty_users_for_a_minute_fail_nothing_and_leave_memory_flat(
    triton: ServerProcess, ab_router: ServerProcess, tmp_path: Path
) -> None:
    services = {"triton": triton, "nginx": ab_router}
    # Warm-up: lazily allocated buffers and pools exist before the baseline is read.
    run_loadtest(ab_router.url, users=50, duration_s=10, out_dir=tmp_path / "warm-up")
    before = {name: _resident_bytes(server) for name, server in services.items()}

    summary = run_loadtest(ab_router.url, users=50, duration_s=60, out_dir=tmp_path / "drill")

    assert summary.total.requests > 1000
    assert summary.total.failures == 0, summary.model_dump_json(indent=2)
    for name, server in services.items():
        after = _resident_bytes(server)
        limit = before[name] * MEMORY_SLACK + MEMORY_SLACK_BYTES
        assert after <= limit, f"{name} grew from {before[name]:,} to {after:,} bytes"
