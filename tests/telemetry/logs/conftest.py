"""Where the Loghub data of these tests lies: a small slice in the repository, the full
samples in ``shared/data`` when it is beside the repository."""

from pathlib import Path

import pytest

SLICE_LOGHUB = Path(__file__).resolve().parents[1] / "data" / "loghub"
SHARED_LOGHUB = Path(__file__).resolve().parents[4] / "shared" / "data" / "loghub"

needs_shared_loghub = pytest.mark.skipif(
    not (SHARED_LOGHUB / "BGL" / "BGL_2k.log").is_file(),
    reason=f"the full Loghub samples are not at {SHARED_LOGHUB}",
)
