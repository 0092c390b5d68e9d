"""The run directory's registration files are replaced whole or not at all.

``registration.json`` is returned by every later ``register_run`` once it exists, and
``registration-attempt.json`` is how a retry resumes its MLflow run: a torn file would break
every retry. The cut is real: a child process whose file-size limit stops the write part way
(EFBIG), as a full disk would.
"""

from pathlib import Path

from contracts.store import TMP_MARKER
from tests.contracts.interrupted_writes import run_child
from training.run_directory import RegistrationResult, RunDirectory

RESULT = RegistrationResult(
    run_id="0123456789abcdef",
    versions={"xgboost_anomaly": "3", "catboost_anomaly": "2"},
    aliases={"champion": "catboost_anomaly/2", "challenger": "xgboost_anomaly/3"},
    decision="catboost_anomaly/2 is champion: better f1 on this run's holdout",
)


def _cut_short(run_path: Path, write: str) -> str:
    """Run ``write`` (a statement on ``run_dir``) with a 16-byte file-size limit; the errno."""
    child = run_child(
        f"""
from pathlib import Path
from training.run_directory import RegistrationResult, RunDirectory
run_dir = RunDirectory(Path({str(run_path)!r}))
result = RegistrationResult.model_validate_json({RESULT.model_dump_json()!r})
limit_file_size(16)
try:
    {write}
except OSError as error:
    print(error.errno)
"""
    )
    assert child.returncode == 0, child.stderr
    return child.stdout.strip()


def _temporary_files(run_path: Path) -> list[Path]:
    return [p for p in run_path.iterdir() if TMP_MARKER in p.name]


def test_registration_and_attempt_round_trip(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path)
    run_dir.save_attempt("http://127.0.0.1:5000", "run-1")
    run_dir.save_registration(RESULT)
    assert RegistrationResult.model_validate_json(run_dir.registration.read_text()) == RESULT
    assert run_dir.registration_attempt.read_text() == (
        '{"tracking_uri": "http://127.0.0.1:5000", "run_id": "run-1"}'
    )


def test_attempt_write_cut_short_keeps_the_previous_attempt(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path)
    run_dir.save_attempt("http://127.0.0.1:5000", "run-1")
    before = run_dir.registration_attempt.read_bytes()
    errno = _cut_short(tmp_path, 'run_dir.save_attempt("http://127.0.0.1:5000", "run-2" * 50)')
    assert errno == "27"  # EFBIG
    assert run_dir.registration_attempt.read_bytes() == before
    assert _temporary_files(tmp_path) == []


def test_registration_write_cut_short_leaves_no_registration(tmp_path: Path) -> None:
    # Intent: a torn registration.json would be returned by every later register_run (or fail
    # it for ever); without it, `vigil register` simply registers again.
    run_dir = RunDirectory(tmp_path)
    assert _cut_short(tmp_path, "run_dir.save_registration(result)") == "27"
    assert not run_dir.registration.exists()
    assert _temporary_files(tmp_path) == []
