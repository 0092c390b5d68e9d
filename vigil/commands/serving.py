"""Serving commands: the Triton model repository, the local Triton, the A/B router, the
scorer, load tests and the A/B report."""

import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from contracts.ports import (
    ROUTER_GRPC_PORT,
    ROUTER_HTTP_PORT,
    TRITON_GRPC_PORT,
    TRITON_HTTP_PORT,
    TRITON_METRICS_PORT,
)
from contracts.serving import CHALLENGER, CHAMPION
from contracts.store import ObjectStore
from serving.router.ab_config import DEFAULT_VALUES_PATH, load_ab_config
from vigil.commands.data import utc
from vigil.commands.options import StoreOption, open_cli_store, settings_for
from vigil.commands.training import TrackingUriOption

console = Console()
serving_app = typer.Typer(help="Model serving: Triton repository and server.", no_args_is_help=True)


@serving_app.command("build-repo")
def build_repo(
    destination: Annotated[
        str, typer.Option(help="Repository root: a directory or s3://bucket/prefix.")
    ] = ".vigil/model-repository",
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Write the Triton model repository for the models holding champion and challenger."""
    from serving.triton.model_repository import build_repository

    if tracking_uri is None:
        raise typer.BadParameter("give --tracking-uri or set MLFLOW_TRACKING_URI")
    settings = settings_for(None)
    summary = build_repository(
        tracking_uri,
        destination,
        endpoint_url=settings.aws_endpoint_url,
        region=settings.aws_region,
    )
    for model in summary.models:
        console.print(
            f"@{model.alias}: {model.name} version {model.version} ({model.backend}) "
            f"→ {summary.uri}/{model.artifact}"
        )
    console.print(f"{len(summary.feature_names)} input features")


@serving_app.command("triton")
def triton(
    repository: Annotated[Path, typer.Option(help="A local model repository.")] = Path(
        ".vigil/model-repository"
    ),
    host: Annotated[str, typer.Option(help="Address every endpoint binds.")] = "127.0.0.1",
    http_port: Annotated[int, typer.Option(help="KServe v2 HTTP.")] = TRITON_HTTP_PORT,
    grpc_port: Annotated[int, typer.Option(help="KServe v2 gRPC.")] = TRITON_GRPC_PORT,
    metrics_port: Annotated[int, typer.Option(help="Prometheus metrics.")] = TRITON_METRICS_PORT,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads per model instance.")] = 1,
    admin_key_env: Annotated[
        str | None,
        typer.Option(
            help="Environment variable holding the key Triton's admin APIs require "
            "(default: the admin APIs are open)."
        ),
    ] = None,
) -> None:
    """Serve the repository with the local Triton until SIGTERM or SIGINT."""
    from serving.triton.server import TritonPorts, run_triton

    admin_key = None
    if admin_key_env is not None:
        admin_key = os.environ.get(admin_key_env)
        if not admin_key:
            raise typer.BadParameter(f"${admin_key_env} is not set", param_hint="--admin-key-env")
    ports = TritonPorts(http_port, grpc_port, metrics_port)
    raise typer.Exit(run_triton(repository, ports, host, threads, admin_key))


@serving_app.command("loadtest")
def loadtest(
    url: Annotated[str, typer.Option(help="The A/B router's HTTP base URL.")] = (
        f"http://127.0.0.1:{ROUTER_HTTP_PORT}"
    ),
    users: Annotated[int, typer.Option(min=1, help="Concurrent clients.")] = 10,
    duration: Annotated[int, typer.Option(min=1, help="Seconds of load.")] = 60,
    out: Annotated[Path, typer.Option(help="Folder for locust's CSV and summary.json.")] = Path(
        ".vigil/loadtest"
    ),
) -> None:
    """Run locust headless against the A/B endpoint; per-arm figures in summary.json."""
    from serving.loadtest.run import run_loadtest

    summary = run_loadtest(url, users, duration, out)
    total = summary.total
    console.print(
        f"{total.requests:,} requests, {total.failures:,} failed "
        f"({summary.success_rate:.2%} success), {total.requests_per_second:.1f} req/s"
    )
    for model, arm in summary.arms.items():
        console.print(
            f"  {model}: {arm.requests:,} requests, p50 {arm.p50_ms} ms, "
            f"p95 {arm.p95_ms} ms, p99 {arm.p99_ms} ms"
        )
    console.print(f"summary: {out / 'summary.json'}")


@serving_app.command("router")
def router(
    prefix: Annotated[
        Path | None, typer.Option(help="nginx's working folder (conf, logs, temp).")
    ] = None,
    upstream: Annotated[
        list[str] | None, typer.Option(help="Triton HTTP host:port (repeat for a pool).")
    ] = None,
    grpc_upstream: Annotated[
        list[str] | None,
        typer.Option(help="Triton gRPC host:port (repeat for a pool); opens the gRPC listener."),
    ] = None,
    metrics_upstream: Annotated[
        list[str] | None, typer.Option(help="Triton metrics host:port (serves /metrics).")
    ] = None,
    repository: Annotated[
        str | None,
        typer.Option(help="Model repository (a directory or s3://…); its summary names the arms."),
    ] = None,
    champion_model: Annotated[
        str | None, typer.Option(help="The champion's Triton model (instead of --repository).")
    ] = None,
    challenger_model: Annotated[
        str | None, typer.Option(help="The challenger's Triton model (with --champion-model).")
    ] = None,
    weights_from: Annotated[
        Path, typer.Option(help="Helm values file with the abTest section.")
    ] = DEFAULT_VALUES_PATH,
    host: Annotated[str, typer.Option(help="Address both listeners bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP listener.")] = ROUTER_HTTP_PORT,
    grpc_port: Annotated[
        int, typer.Option(help="gRPC listener (with --grpc-upstream).")
    ] = ROUTER_GRPC_PORT,
    write_chart_routes: Annotated[
        bool,
        typer.Option(
            help="Only write the A/B routes into the chart (helm/vigil/templates/triton/"
            "_ab_routes.tpl) and exit."
        ),
    ] = False,
) -> None:
    """Render nginx.conf from the Helm abTest weights and run nginx in the foreground."""
    from serving.router import nginx

    if write_chart_routes:
        console.print(nginx.write_chart_routes())
        return
    if not upstream or prefix is None:
        raise typer.BadParameter("--upstream and --prefix are required")
    if repository is not None:
        from serving.triton.model_repository import read_summary

        champion, challenger = nginx.arm_models(read_summary(ObjectStore.from_uri(repository)))
    elif champion_model is not None:
        champion, challenger = champion_model, challenger_model
    else:
        raise typer.BadParameter("give --repository or --champion-model")
    config = nginx.RouterConfig(
        ab=load_ab_config(weights_from),
        champion_model=champion,
        challenger_model=challenger,
        http_upstreams=upstream,
        grpc_upstreams=grpc_upstream or [],
        metrics_upstreams=metrics_upstream or [],
        host=host,
        http_port=port,
        grpc_port=grpc_port if grpc_upstream else None,
    )
    argv = nginx.prepare_nginx(config, prefix)
    os.execv(argv[0], argv)  # nginx becomes this process: signals reach it


@serving_app.command("scorer")
def scorer() -> None:
    """Score each window as it closes; /metrics, /feedback, /healthz on VIGIL_SCORER_PORT.

    Configured by VIGIL_SCORER_* (tracking URI, inference and router URLs, explainer URL,
    window) and VIGIL_STORE_URI; see serving/scorer/settings.py.
    """
    from serving.scorer.app import run_scorer

    run_scorer()


@serving_app.command("ab-report")
def ab_report(
    start: Annotated[datetime, typer.Option(help="First window start, UTC.")],
    end: Annotated[datetime, typer.Option(help="End (exclusive), UTC.")],
    tracking_uri: TrackingUriOption = None,
    out: Annotated[Path, typer.Option(help="Folder for ab_report.json and .html.")] = Path(
        ".vigil/ab-report"
    ),
    apply: Annotated[
        bool, typer.Option(help="Swap the MLflow aliases when the decision is to promote.")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Compare champion and challenger on scored windows and feedback; decide with chi-square."""
    from serving.scorer.ab_report import ab_report_from_store, promote_challenger, write_ab_report
    from serving.scorer.served_models import load_served_models

    if tracking_uri is None:
        raise typer.BadParameter("give --tracking-uri or set MLFLOW_TRACKING_URI")
    weights = load_ab_config()
    report = ab_report_from_store(
        open_cli_store(store),
        load_served_models(tracking_uri),
        {CHAMPION: weights.champion_weight, CHALLENGER: weights.challenger_weight},
        utc(start),
        utc(end),
    )
    json_path, html_path = write_ab_report(report, out)
    console.print(f"decision: {report.decision} ({report.reason})")
    console.print(f"report: {json_path}, {html_path}")
    if apply and report.decision == "promote_challenger":
        aliases = promote_challenger(tracking_uri)
        console.print(f"aliases now {aliases}; rebuild the repository and reload the router")
