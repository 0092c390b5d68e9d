"""Unreadable Parquet files are moved aside to ``quarantine/`` so that a batch goes on.

One corrupt file (a truncated upload, bytes that are not Parquet, a damaged page) would
otherwise stop every job that reads its day. ``read_or_quarantine`` tells such a file apart
from a failing store by re-reading its bytes: when the bytes arrive but do not parse, the file
is moved to ``quarantine/<its key>`` with ``<its key>.reason.txt`` beside it, and the caller
carries on without it. Nothing is deleted: the file can be inspected, repaired and moved back.
"""

import logging
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from contracts.layout import quarantine_path
from contracts.store import ObjectStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuarantinedFile:
    """A file moved aside: where it was, where it is now, and why."""

    key: str
    quarantine_key: str
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.key} is not readable Parquet ({self.reason}); moved to "
            f"{self.quarantine_key}, the batch goes on without it"
        )


def read_or_quarantine(
    store: ObjectStore, key: str, columns: list[str] | None = None
) -> pa.Table | QuarantinedFile:
    """The table at ``key``, or the ``QuarantinedFile`` it became because it does not parse.

    Raises:
        OSError: the store itself failed (the file is left where it is).
        ValueError: the file is readable Parquet but lacks some of ``columns``.
    """
    try:
        return store.read_table(key, columns=columns)
    except (pa.ArrowInvalid, OSError):
        pass  # a corrupt file, or a failed read: the bytes tell them apart
    data = store.read_bytes(key)
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        missing = sorted(set(columns or ()) - set(parquet.schema_arrow.names))
        if missing:
            raise ValueError(f"{store.uri}/{key} lacks the columns {missing}")
        return parquet.read(columns=columns)
    except (pa.ArrowInvalid, OSError) as error:
        message = " ".join(str(error).split())  # pyarrow's messages span lines
        quarantined = quarantine(store, key, f"{type(error).__name__}: {message}")
    logger.warning("%s", quarantined)
    return quarantined


def quarantine(store: ObjectStore, key: str, reason: str) -> QuarantinedFile:
    """Move ``key`` to its quarantine key and write the reason beside it."""
    target = quarantine_path(key)
    store.move(key, target)
    store.write_bytes(f"{target}.reason.txt", f"{reason}\n".encode())
    return QuarantinedFile(key, target, reason)
