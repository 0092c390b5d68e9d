"""Explanation commands: index knowledge, serve the API, run the local LLM server."""

from typing import Annotated

import typer
from rich.console import Console

from vigil.options import StoreOption, open_cli_store

console = Console()
rag_app = typer.Typer(help="The explanation service.", no_args_is_help=True)


@rag_app.command("index")
def index(
    logs: Annotated[
        bool, typer.Option(help="Also index log history and incidents from the store.")
    ] = True,
    store: StoreOption = None,
) -> None:
    """Index runbooks (and log history) into Qdrant; unchanged files are skipped."""
    from rag.indexing import index_from_settings
    from rag.settings import get_rag_settings

    report = index_from_settings(get_rag_settings(), open_cli_store(store) if logs else None)
    console.print(
        f"indexed {len(report.indexed)}, skipped {len(report.skipped)} unchanged, removed "
        f"{len(report.deleted)}; {report.chunks:,} chunks written, collection holds "
        f"{report.collection_size:,} points"
    )


@rag_app.command("serve")
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
) -> None:
    """Serve POST /explain, /healthz, /readyz, /metrics (settings VIGIL_RAG_*)."""
    from rag.service import serve as serve_api

    serve_api(host, port)


@rag_app.command("llm-server")
def llm_server(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8080,
) -> None:
    """The local stand-in for vLLM: llama.cpp's OpenAI-compatible server with Gemma 3 270M."""
    from rag.llm_server import main

    main(["--host", host, "--port", str(port)])
