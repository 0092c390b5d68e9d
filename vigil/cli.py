"""``vigil``: thin Typer commands over functions the tests call directly."""

import typer

app = typer.Typer(help="Vigil: anomaly detection for cloud fleets.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Vigil: anomaly detection for cloud fleets."""
