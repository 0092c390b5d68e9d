"""Importers of the public labelled datasets (SMD, ASD, NAB) into the raw telemetry layout."""

from telemetry.datasets.importer import ImportSummary, StoreNotEmptyError, import_dataset
from telemetry.datasets.published_files import DatasetFormatError

__all__ = ["DatasetFormatError", "ImportSummary", "StoreNotEmptyError", "import_dataset"]
