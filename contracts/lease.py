"""A single-writer lease on a key of an object store, with expiry.

Built on the store's conditional writes (:meth:`contracts.store.ObjectStore.create_exclusive`,
:meth:`contracts.store.ObjectStore.replace_if_version`): a job that must be the only writer
(the CloudWatch exporter, a Kinesis shard's watcher) holds one while it writes.
"""

import os
import socket
import threading
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from contracts.store import ObjectStore


class LeaseBusyError(TimeoutError):
    """Another holder kept the lease for the whole wait. A ``TimeoutError`` (an ``OSError``):
    the command line reports it as one clear message."""


class LeaseLostError(TimeoutError):
    """The lease expired and was taken over, or could not be renewed: the holder must stop
    writing. A ``TimeoutError``: the lease timed out under its holder."""


class LeaseRecord(BaseModel):
    """What a lease object holds: who holds it and until when."""

    model_config = ConfigDict(extra="forbid")

    holder: str
    token: str
    acquired_at: AwareDatetime
    expires_at: AwareDatetime
    process: str | None = None  # boot id/pid namespace/pid/start time, where /proc tells


@dataclass
class Lease:
    """A single-writer lease on ``key`` of ``store``, with expiry.

    Taken by creating the lease object only if absent (:meth:`ObjectStore.create_exclusive`);
    an expired lease (its holder crashed) is taken over with a write conditional on the
    version read, so two takers cannot both win. The holder renews it (conditionally on its
    own version) before each write it must be the only one to make; a renewal that fails
    means someone took the lease over, and :class:`LeaseLostError` stops the holder.

    Expiry compares wall clocks: holders' clocks must agree to well within ``ttl``. A holder
    that died on this machine (same boot, same pid namespace: a killed ``vigil export``, a
    rerun after a crash) is seen dead at once and its lease taken over without waiting for
    the ttl; one on another machine (another pod) is waited out.

    ``with lease:`` after :meth:`acquire` gives it back when the block ends, however it ends.
    """

    store: ObjectStore
    key: str
    ttl: timedelta
    holder: str = field(
        default_factory=lambda: (
            f"{socket.gethostname()} pid {os.getpid()} {threading.current_thread().name}"
        )
    )
    _version: str | None = field(default=None, init=False)
    _record: LeaseRecord | None = field(default=None, init=False)
    _renewed: float = field(default=0.0, init=False)

    def acquire(self, wait: timedelta = timedelta(0), poll_seconds: float = 0.5) -> None:
        """Take the lease, waiting up to ``wait`` while a live holder keeps it.

        Raises:
            LeaseBusyError: another holder kept it for the whole wait; it names the holder.
            ValueError: the lease object holds something that is not a lease.
        """
        deadline = time.monotonic() + wait.total_seconds()
        while True:
            record = self._new_record()
            version = self.store.create_exclusive(self.key, _encode(record))
            if version is None:
                current = self.store.read_versioned(self.key)
                if current is None:
                    continue  # released between the two calls: try again at once
                held = self._parse(current.data)
                if held.expires_at <= datetime.now(UTC) or _died_here(held.process):
                    version = self.store.replace_if_version(
                        self.key, _encode(record), current.version
                    )
            if version is not None:
                self._version, self._record, self._renewed = version, record, time.monotonic()
                return
            if time.monotonic() >= deadline:
                raise LeaseBusyError(
                    f"{self.store.uri}/{self.key} is held by {held.holder} since "
                    f"{held.acquired_at:%Y-%m-%dT%H:%M:%SZ} until "
                    f"{held.expires_at:%Y-%m-%dT%H:%M:%SZ} (renewed while it runs); waited "
                    f"{wait.total_seconds():g} s for it"
                )
            time.sleep(max(0.0, min(poll_seconds, deadline - time.monotonic())))

    def renew(self) -> None:
        """Extend the lease by ``ttl`` from now.

        Raises:
            LeaseLostError: it was taken over, or the store could not be reached to renew it.
        """
        if self._version is None or self._record is None:
            raise LeaseLostError(f"{self.store.uri}/{self.key} is not held")
        record = self._record.model_copy(update={"expires_at": datetime.now(UTC) + self.ttl})
        try:
            version = self.store.replace_if_version(self.key, _encode(record), self._version)
        except (OSError, BotoCoreError, ClientError) as error:
            raise LeaseLostError(
                f"could not renew {self.store.uri}/{self.key} ({error}); stopping before "
                "writing anything else"
            ) from error
        if version is None:
            self._version = None
            raise LeaseLostError(
                f"{self.store.uri}/{self.key} expired and was taken over by another holder; "
                "stopping before writing anything else"
            )
        self._version, self._record, self._renewed = version, record, time.monotonic()

    def renew_if_due(self) -> None:
        """Renew once a third of ``ttl`` has passed since the last renewal."""
        if time.monotonic() - self._renewed >= self.ttl.total_seconds() / 3:
            self.renew()

    def release(self) -> None:
        """Give the lease back (if still held: one taken over is left to its new holder)."""
        if self._version is not None:
            with suppress(OSError, BotoCoreError, ClientError):  # it expires by itself
                self.store.delete_if_version(self.key, self._version)
            self._version = None

    def __enter__(self) -> "Lease":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def _new_record(self) -> LeaseRecord:
        now = datetime.now(UTC)
        return LeaseRecord(
            holder=self.holder,
            token=uuid.uuid4().hex,
            acquired_at=now,
            expires_at=now + self.ttl,
            process=_process_identity(),
        )

    def _parse(self, data: bytes) -> LeaseRecord:
        try:
            return LeaseRecord.model_validate_json(data)
        except ValidationError as error:
            raise ValueError(
                f"{self.store.uri}/{self.key} is not a lease ({error}); delete it once no job "
                "is writing"
            ) from error


def _process_identity() -> str | None:
    """``boot id/pid namespace/pid/start time`` of this process, which tells a dead holder
    from a live one and from a later process given the same pid; None where /proc does not
    say (not Linux)."""
    pid = os.getpid()
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
        start = _process_state(pid)[1]
    except (OSError, ValueError, IndexError):
        return None
    return f"{boot}/{namespace}/{pid}/{start}"


def _process_state(pid: int) -> tuple[str, str]:
    """The state letter and the start time (clock ticks since boot) of a running process."""
    # The command name (field 2) may hold spaces and parentheses: split after its last ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return fields[0], fields[19]


def _died_here(identity: str | None) -> bool:
    """Whether ``identity`` names a process of this boot and pid namespace that is no longer
    running (gone, a zombie, or its pid reused by a later process)."""
    mine = _process_identity()
    if identity is None or mine is None:
        return False
    boot, namespace, pid, start = identity.split("/")
    if [boot, namespace] != mine.split("/")[:2]:
        return False  # another machine or container: only its ttl tells
    try:
        state, now_start = _process_state(int(pid))
    except (OSError, ValueError, IndexError):
        return True
    return state in ("Z", "X") or now_start != start


def _encode(record: LeaseRecord) -> bytes:
    return record.model_dump_json().encode()
