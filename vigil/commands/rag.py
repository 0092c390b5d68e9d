"""Explanation commands: index knowledge, serve the API, run the local LLM server."""

import os
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from contracts.ports import EXPLAINER_PORT, LLM_SERVER_PORT
from vigil.commands.options import EntitiesOption, StoreOption, open_cli_store, split_entities

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
    port: Annotated[int, typer.Option(help="Port to bind.")] = EXPLAINER_PORT,
) -> None:
    """Serve POST /explain, /healthz, /readyz, /metrics (settings VIGIL_RAG_*)."""
    from rag.service import serve as serve_api

    serve_api(host, port)


@rag_app.command("llm-server")
def llm_server(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = LLM_SERVER_PORT,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads llama.cpp uses.")] = 2,
    cache_path: Annotated[
        Path | None,
        typer.Option(help="Where the model, libraries and chat template are prepared once."),
    ] = None,
) -> None:
    """The local stand-in for vLLM: llama.cpp's OpenAI-compatible server with Gemma 3 270M,
    in the foreground."""
    from rag.llm_server import DEFAULT_CACHE_PATH, llama_server_command

    command = llama_server_command(
        port, cache_path=cache_path or DEFAULT_CACHE_PATH, host=host, threads=threads
    )
    os.execvp(command[0], command)  # llama-server becomes this process: signals reach it


@rag_app.command("evaluate")
def evaluate(
    dataset: Annotated[
        Literal["smd", "asd"] | None,
        typer.Option(help="Explain the held-out incidents of a public dataset (needs --path)."),
    ] = None,
    path: Annotated[
        Path | None, typer.Option(help="The dataset folder as published (with --dataset).")
    ] = None,
    entities: EntitiesOption = None,
    eval_set: Annotated[
        Path | None,
        typer.Option("--set", help="Evaluation set JSON (default: rag/eval_set.json)."),
    ] = None,
    llm: Annotated[
        bool | None,
        typer.Option(
            "--llm/--no-llm",
            help="Ask the LLM and check its answers (default: on for the small set, off with "
            "--dataset, where HitRate uses the model's named metrics either way).",
        ),
    ] = None,
    llm_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible base URL; default: start the local LLM server."),
    ] = None,
    label_fraction: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Review budget of the detector (--dataset).")
    ] = 0.02,
    work_dir: Annotated[
        Path | None, typer.Option(help="Keep each entity's store here and reuse it (--dataset).")
    ] = None,
) -> None:
    """Measure explanations: hit@5, type accuracy and LLM answers on the small set, or the
    interpretation HitRate on SMD / ASD. One JSON document on stdout, a table on stderr."""
    import json

    from rag.evaluation import EVAL_SET_PATH
    from rag.settings import get_rag_settings
    from vigil.explanation_evaluation import (
        dataset_table,
        evaluate_dataset_explanations,
        evaluate_small_set,
        small_set_table,
    )

    progress = Console(stderr=True)
    settings = get_rag_settings()
    if dataset is None:
        document = evaluate_small_set(
            settings,
            eval_set or EVAL_SET_PATH,
            llm_url,
            True if llm is None else llm,
            lambda message: progress.print(message),
        )
        table = small_set_table(document)
    else:
        if path is None:
            raise typer.BadParameter("--dataset needs --path, the dataset folder")
        document = evaluate_dataset_explanations(
            settings,
            dataset,
            path,
            split_entities(entities),
            label_fraction,
            work_dir,
            llm_url,
            bool(llm),
            lambda message: progress.print(message),
        )
        table = dataset_table(document)
    Console(stderr=True, width=max(progress.width, 130)).print(table)
    print(json.dumps(document, indent=2, default=str))
