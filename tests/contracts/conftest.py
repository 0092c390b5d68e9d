"""The ``store`` fixture of the store and lease tests: every behavioural test runs on both
store kinds."""

from pathlib import Path

import pytest

from contracts.store import ObjectStore
from tests.contracts.stores import BUCKET, s3_client
from vigil.processes import ServerProcess


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A local store, or an S3 store on a fresh moto server (prefix ``store`` of a bucket)."""
    if request.param == "local":
        return ObjectStore.from_uri(str(tmp_path / "store"))
    emulator: ServerProcess = request.getfixturevalue("aws_emulator")
    s3_client(emulator).create_bucket(Bucket=BUCKET)
    return ObjectStore.from_uri(f"s3://{BUCKET}/store", endpoint_url=emulator.url)
