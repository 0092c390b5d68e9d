"""Writes cut short by the kernel: a child process whose file-size limit (RLIMIT_FSIZE) lets
a write start but not finish, the way a full disk or a quota does. The write fails with EFBIG
part way through, in real file I/O, with no mock in the code under test."""

import os
import subprocess
import sys
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
_PRELUDE = """
import resource, signal

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG as an OSError instead of a kill


def limit_file_size(limit: int) -> None:
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))

"""


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter at the repository root; it calls
    ``limit_file_size(n)`` once its imports are done, before the write under test."""
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-c", _PRELUDE + code],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
