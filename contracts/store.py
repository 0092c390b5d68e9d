"""One object store API over a local directory or ``s3://bucket/prefix``.

Keys: every key a caller reads, writes, lists or deletes goes through :func:`validate_key`, so
no key can climb out of the store's root (``..``), name an absolute path, hide an empty
segment, a backslash or a control character. A name that comes from outside (an instance id
taken from a CloudWatch log-stream name, say) becomes one safe segment with
:func:`encode_key_segment`, reversibly.

Writes are atomic: a reader (or a crash) never sees a half-written object, and the previous
content stays whole until the new one is complete.

- Locally the data goes to a temporary file beside the target (``TMP_MARKER`` in its name,
  skipped by :meth:`ObjectStore.list_keys`), is fsynced, and replaces the target with a rename;
  a failed write removes its temporary file.
- On S3 a PutObject is already atomic per object, so there is no temporary object (which a
  crash between upload and rename would leave behind): bytes are put directly, and a Parquet
  file is written to a local temporary file and uploaded only once complete (a multipart
  upload that fails is aborted by boto3 and never becomes an object).

Conditional writes (:meth:`ObjectStore.create_exclusive`, :meth:`ObjectStore.replace_if_version`)
back :class:`contracts.lease.Lease`, the single-writer lease a job takes on a store (the
CloudWatch exporter).
"""

import fcntl
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from botocore.exceptions import ClientError

from contracts.settings import Settings

TMP_MARKER = ".tmp-"
MAX_KEY_BYTES = 1024  # S3's limit on a whole key
MAX_SEGMENT_BYTES = 255  # NAME_MAX of the usual local filesystems
# S3 answers a conditional write that lost with 412, or with 409 while another conditional
# write on the key is in flight; a conditional write on a missing key answers 404.
_LOST_CONDITION = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404"}


def validate_key(key: str) -> str:
    """``key`` itself when it is a safe store key: relative, ``/``-separated, every segment
    non-empty, not ``.`` or ``..``, no backslash, no control character (NUL included), no
    ``TMP_MARKER``, within the length limits of S3 and local filesystems.

    Raises:
        ValueError: naming the key and what is wrong with it.
    """
    problem = _key_problem(key)
    if problem:
        raise ValueError(f"invalid store key {key!r}: {problem}")
    return key


def validate_prefix(prefix: str) -> str:
    """A prefix to list under: ``""`` (the whole store), or a valid key with at most one
    trailing ``/``. Returns it without the trailing ``/``.

    Raises:
        ValueError: naming the prefix and what is wrong with it.
    """
    if prefix == "":
        return prefix
    trimmed = prefix.removesuffix("/")
    problem = _key_problem(trimmed)
    if problem:
        raise ValueError(f"invalid store prefix {prefix!r}: {problem}")
    return trimmed


def encode_key_segment(name: str) -> str:
    """One safe key segment for a name that comes from outside, reversibly.

    Percent-encoding of the name's UTF-8 bytes, keeping only ASCII letters, digits, ``-``,
    ``_`` and ``~``: ``/``, ``\\``, ``%``, control characters and ``.`` (so no ``..`` and no
    ``TMP_MARKER``) are all encoded. Ordinary instance ids (``i-0abc123``) come out unchanged.
    :func:`decode_key_segment` gives the name back.

    Raises:
        ValueError: the name is empty (no segment can stand for it).
    """
    if not name:
        raise ValueError("an empty name cannot be encoded as a store key segment")
    return quote(name, safe="").replace(".", "%2E")


def decode_key_segment(segment: str) -> str:
    """The name :func:`encode_key_segment` encoded into ``segment``."""
    return unquote(segment, errors="strict")


def write_file_atomically(path: Path, data: bytes) -> None:
    """Replace the local file ``path`` with ``data`` as the local store does: a temporary file
    beside it, fsynced, renamed over it. A crash or a failed write leaves the previous content
    (or no file) and no temporary file behind."""
    with _replace_on_success(str(path)) as tmp, open(tmp, "xb") as out:
        out.write(data)


@dataclass(frozen=True)
class Versioned:
    """An object's bytes and the version a conditional write compares (S3: the ETag; locally
    a SHA-256 of the content)."""

    data: bytes
    version: str


@dataclass(frozen=True)
class ObjectStore:
    """A filesystem and the root path every relative key is resolved against."""

    fs: pafs.FileSystem
    root: str
    uri: str
    endpoint_url: str | None = None
    region: str = "us-east-1"

    @classmethod
    def from_uri(
        cls, uri: str, *, endpoint_url: str | None = None, region: str = "us-east-1"
    ) -> "ObjectStore":
        """Open ``uri`` (a local path or ``s3://bucket/prefix``); creates a local root."""
        if uri.startswith("s3://"):
            kwargs: dict[str, object] = {"region": region}
            if endpoint_url:
                scheme, _, host = endpoint_url.partition("://")
                kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
            root = uri.removeprefix("s3://").rstrip("/")
            return cls(pafs.S3FileSystem(**kwargs), root, uri, endpoint_url, region)
        fs = pafs.LocalFileSystem()
        root = pafs.LocalFileSystem().normalize_path(str(Path(uri).expanduser().resolve()))
        fs.create_dir(root, recursive=True)
        return cls(fs, root, uri)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, key: str) -> str:
        """The filesystem path of ``key`` (validated: see :func:`validate_key`)."""
        return f"{self.root}/{validate_key(key)}"

    def exists(self, key: str) -> bool:
        return bool(self.fs.get_file_info(self.path(key)).type != pafs.FileType.NotFound)

    def list_keys(self, prefix: str, suffix: str = "") -> list[str]:
        """Keys under ``prefix`` ending in ``suffix``, sorted; temporary files are skipped."""
        trimmed = validate_prefix(prefix)
        base = f"{self.root}/{trimmed}" if trimmed else self.root
        if self.fs.get_file_info(base).type == pafs.FileType.NotFound:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True))
        keys = [
            info.path[len(self.root) + 1 :]
            for info in infos
            if info.type == pafs.FileType.File
            and info.path.endswith(suffix)
            and TMP_MARKER not in info.base_name
        ]
        return sorted(keys)

    def read_bytes(self, key: str) -> bytes:
        with self.fs.open_input_stream(self.path(key)) as stream:
            return bytes(stream.read())

    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace ``key`` with ``data`` atomically."""
        path = self.path(key)
        if self.is_local:
            write_file_atomically(Path(path), data)
        else:
            bucket, name = path.split("/", 1)
            self._s3.put_object(Bucket=bucket, Key=name, Body=data)

    def read_table(self, key: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.path(key), filesystem=self.fs, columns=columns)

    def parquet_file(self, key: str) -> pq.ParquetFile:
        """An open Parquet file, for reading row group by row group."""
        return pq.ParquetFile(self.fs.open_input_file(self.path(key)))

    def write_table(self, key: str, table: pa.Table) -> None:
        with self.parquet_writer(key, table.schema) as writer:
            writer.write_table(table)

    @contextmanager
    def parquet_writer(
        self, key: str, schema: pa.Schema, use_dictionary: bool | list[str] = True
    ) -> Iterator[pq.ParquetWriter]:
        """A Parquet writer whose file appears at ``key`` only if the block completes.

        ``use_dictionary`` as for pyarrow: wide float tables write much faster with a
        dictionary only on their repetitive string columns.
        """
        path = self.path(key)
        staged = _replace_on_success(path) if self.is_local else self._upload_on_success(path)
        with staged as tmp:
            writer = pq.ParquetWriter(
                tmp,
                schema,
                filesystem=pafs.LocalFileSystem(),
                compression="zstd",
                use_dictionary=use_dictionary,
            )
            try:
                yield writer
            finally:
                writer.close()

    def move(self, key: str, target: str) -> None:
        """Move a file to another key of this store (a rename, or a copy then delete on S3)."""
        source, final = self.path(key), self.path(target)
        if self.is_local:
            self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
        self.fs.move(source, final)

    def delete(self, key: str) -> None:
        if self.exists(key):
            self.fs.delete_file(self.path(key))

    # --- conditional writes: what a lease is built on -------------------------------------

    def read_versioned(self, key: str) -> Versioned | None:
        """The object's bytes and version; None when it does not exist."""
        path = self.path(key)
        if self.is_local:
            try:
                data = Path(path).read_bytes()
            except FileNotFoundError:
                return None
            return Versioned(data, _digest(data))
        bucket, name = path.split("/", 1)
        try:
            answer = self._s3.get_object(Bucket=bucket, Key=name)
        except ClientError as error:
            if _error_code(error) in ("NoSuchKey", "404"):
                return None
            raise
        return Versioned(answer["Body"].read(), str(answer["ETag"]))

    def create_exclusive(self, key: str, data: bytes) -> str | None:
        """Create ``key`` with ``data`` only if it does not exist; its version, or None when
        it already existed. S3: PutObject ``If-None-Match: *``; locally a hard link of a
        complete temporary file (it fails if the target exists, like ``O_EXCL``, and unlike an
        ``O_EXCL`` create followed by a write a reader never sees the file half written)."""
        path = self.path(key)
        if not self.is_local:
            return self._put_conditionally(path, data, IfNoneMatch="*")
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = f"{path}{TMP_MARKER}{uuid.uuid4().hex}"
        try:
            with open(tmp, "xb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return None
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync(directory)
        return _digest(data)

    def replace_if_version(self, key: str, data: bytes, version: str) -> str | None:
        """Replace ``key`` with ``data`` only if it still has ``version``; the new version, or
        None when it changed or is gone. S3: PutObject ``If-Match``; locally a compare and
        replace under an exclusive lock of the key's directory."""
        path = self.path(key)
        if not self.is_local:
            return self._put_conditionally(path, data, IfMatch=version)
        with _directory_lock(os.path.dirname(path)):
            current = self.read_versioned(key)
            if current is None or current.version != version:
                return None
            write_file_atomically(Path(path), data)
        return _digest(data)

    def delete_if_version(self, key: str, version: str) -> bool:
        """Delete ``key`` only if it still has ``version``; whether it was deleted."""
        path = self.path(key)
        if self.is_local:
            with _directory_lock(os.path.dirname(path)):
                current = self.read_versioned(key)
                if current is None or current.version != version:
                    return False
                os.unlink(path)
            return True
        bucket, name = path.split("/", 1)
        try:
            self._s3.delete_object(Bucket=bucket, Key=name, IfMatch=version)
        except ClientError as error:
            if _error_code(error) in _LOST_CONDITION:
                return False
            raise
        return True

    # --- S3 internals ---------------------------------------------------------------------

    @cached_property
    def _s3(self) -> Any:
        """A boto3 S3 client on the store's endpoint, for the writes pyarrow cannot make:
        direct and conditional PutObject. Built on first use, in its own session (the default
        session is not safe to share between threads)."""
        import boto3  # only S3 stores need it

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region
        )

    @contextmanager
    def _upload_on_success(self, path: str) -> Iterator[str]:
        """A local temporary path; uploaded to ``path`` (bucket/key) once the block completes.

        The temporary file lives in the system's temporary directory, which must hold the
        largest object written (a day's features)."""
        with tempfile.TemporaryDirectory(prefix="vigil-upload-") as directory:
            local = os.path.join(directory, "object")
            yield local
            bucket, name = path.split("/", 1)
            # upload_file switches to a multipart upload for large files and aborts it on
            # failure: the key keeps its previous object.
            self._s3.upload_file(local, bucket, name)

    def _put_conditionally(self, path: str, data: bytes, **condition: str) -> str | None:
        bucket, name = path.split("/", 1)
        try:
            answer = self._s3.put_object(Bucket=bucket, Key=name, Body=data, **condition)
        except ClientError as error:
            if _error_code(error) in _LOST_CONDITION:
                return None
            raise
        return str(answer["ETag"])


def open_store(settings: Settings) -> ObjectStore:
    """The object store the settings point at."""
    return ObjectStore.from_uri(
        settings.store_uri, endpoint_url=settings.aws_endpoint_url, region=settings.aws_region
    )


def _key_problem(key: str) -> str | None:
    if not isinstance(key, str):
        return f"a key is a string, not {type(key).__name__}"
    if key == "":
        return "it is empty"
    if "\x00" in key:
        return "it contains NUL"
    if any(ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0 for char in key):
        return "it contains a control character"
    if "\\" in key:
        return "it contains a backslash"
    if key.startswith("/"):
        return "it is absolute (starts with /)"
    if len(key.encode()) > MAX_KEY_BYTES:
        return f"it is longer than {MAX_KEY_BYTES} bytes"
    for segment in key.split("/"):
        if segment == "":
            return "it has an empty segment (// or a trailing /)"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment"
        if TMP_MARKER in segment:
            return f"{TMP_MARKER!r} is reserved for writes in progress"
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            return f"a segment is longer than {MAX_SEGMENT_BYTES} bytes"
    return None


@contextmanager
def _replace_on_success(final: str) -> Iterator[str]:
    """A temporary path beside ``final``; fsynced and renamed over it once the block
    completes, removed if it fails."""
    directory = os.path.dirname(final)
    os.makedirs(directory, exist_ok=True)
    tmp = f"{final}{TMP_MARKER}{uuid.uuid4().hex}"
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, final)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync(directory)  # the rename itself survives a power loss


def _fsync(path: str) -> None:
    """Flush a file's data, or a directory's entries, to disk (fsync of a read-only
    descriptor flushes the whole inode on Linux)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def _directory_lock(directory: str) -> Iterator[None]:
    """An exclusive flock on a directory: the local store's compare-and-swap section. The
    kernel drops it if the process dies, so a crash never leaves it held."""
    os.makedirs(directory, exist_ok=True)
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
