"""The synthetic samples are what their generator writes (no hand edits, no drift)."""

import importlib.util
from pathlib import Path

SAMPLES_PATH = Path(__file__).resolve().parents[2] / "data" / "analysis"


def test_samples_match_their_generator(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES_PATH / "make_samples.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for written in module.write_samples(tmp_path):
        committed = SAMPLES_PATH / written.name
        assert written.read_text() == committed.read_text(), f"rerun {spec.origin}"
