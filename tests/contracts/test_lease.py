"""The single-writer lease: same behaviour on a local directory and on S3 over the wire (the
``store`` fixture runs each behavioural test on both)."""

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.lease import Lease, LeaseBusyError, LeaseLostError
from contracts.store import ObjectStore
from tests.contracts.interrupted_writes import REPOSITORY
from tests.contracts.stores import all_files


@pytest.mark.slow
def test_lease_is_exclusive_taken_over_after_expiry_and_lost_by_a_stalled_holder(
    store: ObjectStore,
) -> None:
    first = Lease(store, "jobs/export.lease", timedelta(seconds=2), holder="first")
    first.acquire()
    with pytest.raises(LeaseBusyError, match="held by first"):
        Lease(store, "jobs/export.lease", timedelta(minutes=5), holder="second").acquire()

    # The first holder stalls past its ttl (as a crashed one would): the lease is taken over.
    second = Lease(store, "jobs/export.lease", timedelta(minutes=5), holder="second")
    second.acquire(wait=timedelta(seconds=10), poll_seconds=0.1)
    with pytest.raises(LeaseLostError, match="taken over"):
        first.renew()
    first.release()  # gives back nothing: the lease is the second holder's now
    with pytest.raises(LeaseBusyError, match="held by second"):
        Lease(store, "jobs/export.lease", timedelta(minutes=5), holder="third").acquire()

    second.renew()
    second.release()
    third = Lease(store, "jobs/export.lease", timedelta(minutes=5), holder="third")
    third.acquire()
    third.release()
    assert all_files(store) == []


@pytest.mark.slow
def test_lease_of_a_killed_holder_on_this_machine_is_taken_at_once(store: ObjectStore) -> None:
    # Intent: `kill -9` of a `vigil export`, then a rerun: the rerun must not wait out the
    # ttl (minutes) when the holder is known dead; a live holder keeps its lease.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"""
import time
from datetime import timedelta
from contracts.lease import Lease
from contracts.store import ObjectStore
store = ObjectStore.from_uri({store.uri!r}, endpoint_url={store.endpoint_url!r})
Lease(store, "jobs/export.lease", timedelta(minutes=10), holder="doomed").acquire()
print("held", flush=True)
time.sleep(120)
""",
        ],
        cwd=REPOSITORY,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LeaseBusyError, match="held by doomed"):
            Lease(store, "jobs/export.lease", timedelta(minutes=10)).acquire()
    finally:
        holder.kill()
        holder.wait()
    rerun = Lease(store, "jobs/export.lease", timedelta(minutes=10))
    rerun.acquire()  # no wait: the holder is dead
    rerun.release()


def test_lease_waits_for_its_holder_to_release(tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    holder = Lease(store, "export.lease", timedelta(minutes=5), holder="holder")
    holder.acquire()
    timer = threading.Timer(0.5, holder.release)
    timer.start()
    started = datetime.now(UTC)
    waiter = Lease(store, "export.lease", timedelta(minutes=5), holder="waiter")
    waiter.acquire(wait=timedelta(seconds=30), poll_seconds=0.05)
    timer.join()
    assert timedelta(seconds=0.4) < datetime.now(UTC) - started < timedelta(seconds=10)
    waiter.release()


def test_a_file_that_is_not_a_lease_is_refused_not_taken(tmp_path: Path) -> None:
    store = ObjectStore.from_uri(str(tmp_path / "store"))
    store.write_bytes("export.lease", b"garbage")
    with pytest.raises(ValueError, match="is not a lease"):
        Lease(store, "export.lease", timedelta(minutes=5)).acquire()
    assert store.read_bytes("export.lease") == b"garbage"
