"""Options and helpers every command shares: the store, settings and progress bars."""

from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from contracts.settings import Settings, get_settings
from contracts.store import ObjectStore, open_store

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="Object store root: a directory or s3://bucket/prefix (default VIGIL_STORE_URI).",
    ),
]


EntitiesOption = Annotated[
    str | None, typer.Option(help="Comma-separated machines/servers/series (default all).")
]


def split_entities(entities: str | None) -> list[str] | None:
    """``a, b`` -> ``["a", "b"]``; None (all entities) when the option was not given."""
    return [e.strip() for e in entities.split(",") if e.strip()] if entities else None


def settings_for(store_uri: str | None) -> Settings:
    """The process settings, with the store overridden when the command line names one."""
    settings = get_settings()
    return settings if store_uri is None else settings.model_copy(update={"store_uri": store_uri})


def open_cli_store(store_uri: str | None) -> ObjectStore:
    """The store a command works on."""
    return open_store(settings_for(store_uri))


def progress_bar(console: Console) -> Progress:
    """The progress display of every long command."""
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
