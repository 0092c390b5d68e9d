"""Where a template miner's state lives: a local file or a key of the object store.

Saving goes through ``contracts.store.ObjectStore`` in both cases, so a state file is written
atomically (a reader, or a crash, never sees half of it) on a disk and on S3 alike.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from contracts.settings import Settings
from contracts.store import ObjectStore
from telemetry.logs.templates import LogTemplateMiner, MinerSettings


def state_location(uri: str, settings: Settings) -> tuple[ObjectStore, str]:
    """The store and key of a state path.

    Args:
        uri: A local file path, or ``s3://bucket/prefix/name.json``.
        settings: Where AWS is reached (endpoint, region) for an ``s3://`` path.

    Returns:
        ``(store, key)``: the store rooted at the path's folder, and the file name.

    Raises:
        ValueError: When the path names no file (it ends in ``/``).
    """
    root, _, name = uri.rstrip().rpartition("/")
    if not name:
        raise ValueError(f"state path {uri!r} names a folder; give a file, e.g. {uri}state.json")
    store = ObjectStore.from_uri(
        root or ".", endpoint_url=settings.aws_endpoint_url, region=settings.aws_region
    )
    return store, name


def load_miner(
    store: ObjectStore, key: str, settings: MinerSettings | None = None
) -> LogTemplateMiner:
    """The miner saved at ``key``, or a new one when nothing is saved there yet.

    Args:
        store: The object store (a local directory or S3).
        key: The state's key in the store.
        settings: Settings of a new miner (a saved state keeps its own).

    Returns:
        The miner.

    Raises:
        ValueError: When the key holds something that is not a miner state.
    """
    if store.exists(key):
        return LogTemplateMiner.from_state(store.read_bytes(key))
    return LogTemplateMiner(settings)


def save_miner(miner: LogTemplateMiner, store: ObjectStore, key: str) -> None:
    """Save the miner's state at ``key``, atomically.

    Args:
        miner: The miner.
        store: The object store.
        key: The state's key.
    """
    store.write_bytes(key, miner.state())


@contextmanager
def persistent_miner(uri: str | None, settings: Settings) -> Iterator[LogTemplateMiner]:
    """A miner loaded from a state path, saved back there when the block completes.

    Args:
        uri: The state path (see ``state_location``); None for a miner that is not kept.
        settings: Where AWS is reached, for an ``s3://`` path.

    Yields:
        The miner: the saved one, or a new one when nothing is saved yet (or no path).

    Raises:
        ValueError: When the path names a folder or holds something that is not a state.
    """
    if uri is None:
        yield LogTemplateMiner()
        return
    store, key = state_location(uri, settings)
    miner = load_miner(store, key)
    yield miner
    save_miner(miner, store, key)
