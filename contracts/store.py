"""One object store API over a local directory or ``s3://bucket/prefix``.

Every write is atomic: data goes to a temporary name beside the target and is moved into
place only when complete, so a reader (or a crash) never sees a half-written file. Locally the
move is a rename; on S3 it is a server-side copy, and a key appears only once fully written.
"""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from contracts.settings import Settings

TMP_MARKER = ".tmp-"


@dataclass(frozen=True)
class ObjectStore:
    """A filesystem and the root path every relative key is resolved against."""

    fs: pafs.FileSystem
    root: str
    uri: str

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
            return cls(pafs.S3FileSystem(**kwargs), uri.removeprefix("s3://").rstrip("/"), uri)
        fs = pafs.LocalFileSystem()
        root = pafs.LocalFileSystem().normalize_path(str(Path(uri).expanduser().resolve()))
        fs.create_dir(root, recursive=True)
        return cls(fs, root, uri)

    def path(self, key: str) -> str:
        return f"{self.root}/{key.lstrip('/')}"

    def exists(self, key: str) -> bool:
        return bool(self.fs.get_file_info(self.path(key)).type != pafs.FileType.NotFound)

    def list_keys(self, prefix: str, suffix: str = "") -> list[str]:
        """Keys under ``prefix`` ending in ``suffix``, sorted; temporary files are skipped."""
        base = self.path(prefix)
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
        with self._atomic(key) as tmp, self.fs.open_output_stream(tmp) as out:
            out.write(data)

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
        with self._atomic(key) as tmp:
            writer = pq.ParquetWriter(
                tmp, schema, filesystem=self.fs, compression="zstd", use_dictionary=use_dictionary
            )
            try:
                yield writer
            finally:
                writer.close()

    def move(self, key: str, target: str) -> None:
        """Move a file to another key of this store (a rename, or a copy then delete on S3)."""
        final = self.path(target)
        if isinstance(self.fs, pafs.LocalFileSystem):
            self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
        self.fs.move(self.path(key), final)

    def delete(self, key: str) -> None:
        if self.exists(key):
            self.fs.delete_file(self.path(key))

    @contextmanager
    def _atomic(self, key: str) -> Iterator[str]:
        final = self.path(key)
        if isinstance(self.fs, pafs.LocalFileSystem):  # S3 has no directories to create
            self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
        tmp = f"{final}{TMP_MARKER}{uuid.uuid4().hex}"
        try:
            yield tmp
        except BaseException:
            if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                self.fs.delete_file(tmp)
            raise
        self.fs.move(tmp, final)


def open_store(settings: Settings) -> ObjectStore:
    """The object store the settings point at."""
    return ObjectStore.from_uri(
        settings.store_uri, endpoint_url=settings.aws_endpoint_url, region=settings.aws_region
    )
