"""The explanation log keeps instance ids that come from outside inside its own prefix.

An instance id is a CloudWatch log-stream name: anyone who can create a log stream chooses it.
Written into a key as it is, ``../../models/champion`` would climb out of
``scorer/explanations/`` (locally, out of the store itself with enough ``..``).
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from contracts.explanation import ExplainRequest
from contracts.store import ObjectStore, decode_key_segment
from serving.scorer.explanation_log import EXPLANATIONS_PREFIX, read_explanations, write_explanation
from vigil.processes import ServerProcess

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CRAFTED = [
    "../../models/champion",
    "a/../../x",
    "../../../../../../../../tmp/escaped",
    "..",
    "i-0abc/..\\..\\win",
    "i-0abc\x00.json",
    "i-0abc123",
]


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "local":
        return ObjectStore.from_uri(str(tmp_path / "store"))
    emulator: ServerProcess = request.getfixturevalue("aws_emulator")
    boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1").create_bucket(
        Bucket="vigil"
    )
    return ObjectStore.from_uri("s3://vigil/store", endpoint_url=emulator.url)


def _request(instance_id: str) -> ExplainRequest:
    return ExplainRequest(
        instance_id=instance_id,
        window_start=START,
        window_end=START + timedelta(minutes=5),
        score=0.97,
        model="xgboost_anomaly",
    )


def _written_anywhere(store: ObjectStore, tmp_path: Path) -> list[str]:
    """Every file or object that exists, relative to the store root when inside it."""
    if store.is_local:
        root = Path(store.root)
        return sorted(
            str(p.relative_to(root)) if p.is_relative_to(root) else f"OUTSIDE:{p}"
            for p in tmp_path.rglob("*")
            if p.is_file()
        )
    s3 = boto3.client("s3", endpoint_url=store.endpoint_url, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="vigil").get("Contents", [])]
    return sorted(
        k.removeprefix("store/") if k.startswith("store/") else f"OUTSIDE:{k}"
        for k in keys
        if not k.endswith("/")
    )


@pytest.mark.slow
def test_crafted_instance_ids_stay_one_file_under_the_day_prefix(
    store: ObjectStore, tmp_path: Path
) -> None:
    store.write_bytes("models/champion", b"the champion")
    day_prefix = f"{EXPLANATIONS_PREFIX}/{START:%Y-%m-%d}/"
    written = [write_explanation(store, _request(name), {"summary": name}) for name in CRAFTED]

    for name, key in zip(CRAFTED, written, strict=True):
        assert key.startswith(day_prefix)
        file_name = key.removeprefix(day_prefix)
        assert "/" not in file_name
        assert decode_key_segment(file_name.removeprefix("120000_").removesuffix(".json")) == name
    assert _written_anywhere(store, tmp_path) == sorted(["models/champion", *written])
    assert store.read_bytes("models/champion") == b"the champion"
    kept = read_explanations(store, START, START + timedelta(hours=1))
    assert sorted(r.request.instance_id for r in kept) == sorted(CRAFTED)
