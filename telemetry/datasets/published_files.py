"""Finding and reading the files of a published dataset, plain or gzip-compressed."""

import gzip
import io
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray

GZIP_SUFFIX = ".gz"


class DatasetFormatError(ValueError):
    """A dataset file is missing or does not have the published layout or contents."""


def require_dir(path: Path) -> Path:
    """``path`` if it is a directory, else a DatasetFormatError naming it."""
    if not path.is_dir():
        raise DatasetFormatError(f"dataset directory not found: {path}")
    return path


def find_file(directory: Path, name: str) -> Path:
    """The file ``name`` in ``directory``, as published or gzip-compressed (exactly one)."""
    candidates = [p for p in (directory / name, directory / f"{name}{GZIP_SUFFIX}") if p.is_file()]
    if not candidates:
        raise DatasetFormatError(f"dataset file not found: {directory / name}[{GZIP_SUFFIX}]")
    if len(candidates) > 1:
        raise DatasetFormatError(
            f"both {candidates[0].name} and {candidates[1].name} exist in {directory}; keep one"
        )
    return candidates[0]


def stems(directory: Path, suffix: str) -> list[str]:
    """Sorted names of the files in ``directory`` ending in ``suffix`` (or ``suffix``.gz)."""
    found = set()
    for path in require_dir(directory).iterdir():
        name = path.name.removesuffix(GZIP_SUFFIX)
        if path.is_file() and name.endswith(suffix):
            found.add(name.removesuffix(suffix))
    return sorted(found)


def read_bytes(path: Path) -> bytes:
    """The contents of ``path``, decompressed when it ends in ``.gz``."""
    data = path.read_bytes()
    if path.name.endswith(GZIP_SUFFIX):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DatasetFormatError(f"{path}: not a valid gzip file ({exc})") from exc
    return data


def read_text(path: Path) -> str:
    """The contents of ``path`` (decompressed when ``.gz``) as UTF-8 text."""
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{path}: not UTF-8 text ({exc})") from exc


def read_number_matrix(path: Path, columns: int) -> NDArray[Any]:
    """A headerless comma-separated file of numbers as a float64 (rows, columns) array.

    An empty cell or a NaN is a missing value and comes back as NaN (see tidy.py for how
    missing values are imported).

    Raises:
        DatasetFormatError: when a row has another number of cells, or a value is not a
            number or infinite. The message names the file and the row (1-based).
    """
    data = read_bytes(path)
    if not data.strip():
        raise DatasetFormatError(f"{path}: file is empty")
    try:
        raw = pl.read_csv(io.BytesIO(data), has_header=False, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise DatasetFormatError(
            f"{path}: expected {columns} comma-separated values per row ({exc})"
        ) from exc
    if raw.width != columns:
        raise DatasetFormatError(f"{path}: expected {columns} columns per row, found {raw.width}")
    # The reader fills the cells a short row lacks with nulls, as it reads an empty cell: a
    # row must have every cell (maybe empty) to tell a missing value from a broken row.
    for number, line in enumerate(data.splitlines(), start=1):
        if line.count(b",") != columns - 1:
            raise DatasetFormatError(
                f"{path}: row {number} has {line.count(b',') + 1} values, expected {columns}"
            )
    numbers = raw.select(parse_numbers(column) for column in raw.columns)
    matrix = numbers.to_numpy().astype(np.float64)
    bad_rows = np.flatnonzero(numbers.select(pl.any_horizontal(pl.all().is_null())).to_series())
    if bad_rows.size:
        row = int(bad_rows[0])
        raise DatasetFormatError(
            f"{path}: row {row + 1} holds a non-numeric or infinite value ({raw.row(row)}); "
            f"{bad_rows.size} such rows in all"
        )
    return matrix


def parse_numbers(column: str) -> pl.Expr:
    """A text column as Float64: NaN where a cell is empty or NaN (a missing value), null
    where it is not a number or is infinite (a malformed value)."""
    stripped = pl.col(column).str.strip_chars()
    number = stripped.cast(pl.Float64, strict=False)
    return (
        pl.when(stripped.is_null() | (stripped == ""))
        .then(float("nan"))
        .when(number.is_infinite())
        .then(None)
        .otherwise(number)
        .alias(column)
    )
