"""What the store and lease tests share: the S3 bucket their S3 stores live in, and what a
store holds, temporary files included."""

from pathlib import Path

import boto3
from botocore.client import BaseClient

from contracts.store import ObjectStore
from vigil.processes import ServerProcess

BUCKET = "vigil"


def s3_client(emulator: ServerProcess) -> BaseClient:
    return boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1")


def all_files(store: ObjectStore) -> list[str]:
    """Every file or object there is, temporary ones included, relative to the store's root
    for what is inside it and marked ``OUTSIDE:`` for anything beside it: what a write left."""
    if store.is_local:
        root = Path(store.root)
        found = [p for p in root.parent.rglob("*") if p.is_file()]
        return sorted(
            str(p.relative_to(root)) if p.is_relative_to(root) else f"OUTSIDE:{p}" for p in found
        )
    s3 = boto3.client("s3", endpoint_url=store.endpoint_url, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    keys = [k for k in keys if not k.endswith("/")]  # pyarrow's empty "dir/" markers
    prefix = store.root.split("/", 1)[1] + "/"
    return sorted(k.removeprefix(prefix) if k.startswith(prefix) else f"OUTSIDE:{k}" for k in keys)
