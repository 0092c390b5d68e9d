"""The retrain relay command: Alertmanager webhook → GitHub repository_dispatch."""

from typing import Annotated

import typer

from contracts.ports import RELAY_PORT


def relay(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port Alertmanager posts to.")] = RELAY_PORT,
) -> None:
    """Serve POST /alerts, /healthz, /metrics: retrain alerts become a GitHub dispatch
    (settings VIGIL_RELAY_*; the token and the API key have no default)."""
    import uvicorn

    from vigil.relay import create_app

    uvicorn.run(create_app(), host=host, port=port, log_level="info")
