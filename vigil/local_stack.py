"""Start the local stack's services on free loopback ports, the way production runs them.

Each ``start_*`` function starts one service detached (its own session, so the stack can
outlive the command), waits until it is healthy and records it in the stack's state file, so
``vigil status`` and ``vigil down`` find it and stop it by PID.
"""

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from serving.router.ab_config import load_ab_config
from serving.router.nginx import LIVE_PATH, RouterConfig, arm_models, prepare_nginx
from serving.triton.model_repository import RepositorySummary, build_repository
from serving.triton.server import READY_PATH, TritonPorts
from vigil.processes import (
    ServerProcess,
    free_port,
    start_mlflow,
    start_server,
    venv_tool,
    wait_for_ok,
)
from vigil.stack import record

MONITORING_PATH = Path(__file__).resolve().parents[1] / "monitoring"
ALERTMANAGER_CONFIG_PATH = MONITORING_PATH / "alertmanager" / "alertmanager.yml"
READY = "/-/ready"  # Prometheus's and Alertmanager's readiness endpoint


@dataclass(frozen=True)
class Serving:
    """Triton and the A/B router in front of it."""

    repository: RepositorySummary
    triton: ServerProcess
    triton_ports: TritonPorts
    router: ServerProcess
    router_grpc_port: int


def _record(stack_path: Path, server: ServerProcess, health_path: str) -> ServerProcess:
    record(stack_path, server, health_path)
    return server


def triton_argv(
    repository: Path,
    ports: TritonPorts,
    host: str = "127.0.0.1",
    threads: int = 1,
    admin_key_env: str | None = None,
) -> list[str]:
    """The command that runs the local Triton (``vigil serving triton``) as a process; with
    ``admin_key_env``, the admin APIs need the key held by that environment variable."""
    admin = ["--admin-key-env", admin_key_env] if admin_key_env else []
    return [
        venv_tool("vigil"),
        "serving",
        "triton",
        "--repository",
        str(repository),
        "--host",
        host,
        "--http-port",
        str(ports.http),
        "--grpc-port",
        str(ports.grpc),
        "--metrics-port",
        str(ports.metrics),
        "--threads",
        str(threads),
        *admin,
    ]


def start_triton(
    repository: Path,
    ports: TritonPorts,
    log_dir: Path,
    timeout: float = 120,
    detach: bool = False,
    admin_key_env: str | None = None,
    name: str = "triton",
) -> ServerProcess:
    """The local Triton serving ``repository``; it answers once every model is loaded."""
    argv = triton_argv(repository, ports, admin_key_env=admin_key_env)
    url = f"http://127.0.0.1:{ports.http}"
    return start_server(name, argv, url, READY_PATH, log_dir, timeout, detach=detach)


def local_router_config(summary: RepositorySummary, ports: TritonPorts) -> RouterConfig:
    """The A/B router in front of one local Triton on free ports, weighted by the chart's
    values."""
    champion, challenger = arm_models(summary)
    return RouterConfig(
        ab=load_ab_config(),
        champion_model=champion,
        challenger_model=challenger,
        http_upstreams=[f"127.0.0.1:{ports.http}"],
        grpc_upstreams=[f"127.0.0.1:{ports.grpc}"],
        metrics_upstreams=[f"127.0.0.1:{ports.metrics}"],
        http_port=free_port(),
        grpc_port=free_port(),
        worker_processes=1,
    )


def start_router(
    config: RouterConfig, prefix: Path, log_dir: Path, timeout: float = 30, detach: bool = False
) -> ServerProcess:
    """The A/B router: ``config`` rendered and checked under ``prefix``, nginx run until it
    answers on its HTTP port."""
    url = f"http://{config.host}:{config.http_port}"
    argv = prepare_nginx(config, prefix)
    return start_server("nginx", argv, url, LIVE_PATH, log_dir, timeout, detach=detach)


def start_local_mlflow(stack_path: Path) -> ServerProcess:
    """MLflow with its SQLite registry and artifacts under the stack folder."""
    root = stack_path / "mlflow"
    root.mkdir(parents=True, exist_ok=True)
    server = start_mlflow(root, _logs(stack_path), detach=True)
    return _record(stack_path, server, "/health")


def start_serving(stack_path: Path, tracking_uri: str) -> Serving:
    """Build the Triton repository from the MLflow aliases, start Triton and the A/B router."""
    repository_path = stack_path / "model-repository"
    summary = build_repository(tracking_uri, str(repository_path))
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    triton = start_triton(repository_path, ports, _logs(stack_path), timeout=180, detach=True)
    _record(stack_path, triton, READY_PATH)
    config = local_router_config(summary, ports)
    router = start_router(config, stack_path / "nginx", _logs(stack_path), 60, detach=True)
    _record(stack_path, router, LIVE_PATH)
    assert config.grpc_port is not None
    return Serving(summary, triton, ports, router, config.grpc_port)


@dataclass(frozen=True)
class Explainer:
    """The explanation service and the LLM server behind it."""

    service: ServerProcess
    llm: ServerProcess
    indexed_chunks: int


def start_explainer(stack_path: Path) -> Explainer:
    """The local LLM server, the runbooks indexed into Qdrant, and the explanation API.

    Qdrant's local mode allows one process per collection folder, so the index is written
    before the API (which then owns it) starts.
    """
    from rag.indexing import index_from_settings
    from rag.llm_server import HEALTH_PATH, llama_server_command
    from rag.settings import RagSettings

    llm_port = free_port()
    llm = start_server(
        "llm",
        llama_server_command(llm_port),
        f"http://127.0.0.1:{llm_port}",
        HEALTH_PATH,
        _logs(stack_path),
        120,
        detach=True,
    )
    _record(stack_path, llm, HEALTH_PATH)
    wait_for_ok(llm.url + HEALTH_PATH)  # 503 while the model loads
    env = {
        "VIGIL_RAG_QDRANT_PATH": str((stack_path / "qdrant").resolve()),
        "VIGIL_RAG_LLM_BASE_URL": f"{llm.url}/v1",
    }
    report = index_from_settings(
        RagSettings(qdrant_path=stack_path / "qdrant", llm_base_url=env["VIGIL_RAG_LLM_BASE_URL"]),
        None,
    )
    port = free_port()
    argv = [
        "env",
        *(f"{k}={v}" for k, v in env.items()),
        venv_tool("vigil"),
        "rag",
        "serve",
        "--port",
        str(port),
    ]
    service = start_server(
        "explainer",
        argv,
        f"http://127.0.0.1:{port}",
        "/healthz",
        _logs(stack_path),
        180,
        detach=True,
    )
    _record(stack_path, service, "/healthz")
    return Explainer(service, llm, report.chunks)


def start_scorer(
    stack_path: Path,
    store_uri: str,
    tracking_uri: str,
    serving: Serving,
    replay: tuple[datetime, datetime] | None = None,
    explain_url: str | None = None,
) -> ServerProcess:
    """The online scorer, scoring through the A/B router over gRPC; optionally replaying a
    past range at startup."""
    port = free_port()
    env = {
        "VIGIL_STORE_URI": store_uri,
        "VIGIL_SCORER_TRACKING_URI": tracking_uri,
        "VIGIL_SCORER_INFERENCE_URL": f"127.0.0.1:{serving.router_grpc_port}",
        "VIGIL_SCORER_AB_ROUTER_URL": serving.router.url,
        "VIGIL_SCORER_PORT": str(port),
    }
    if replay is not None:
        env["VIGIL_SCORER_REPLAY_START"] = replay[0].isoformat()
        env["VIGIL_SCORER_REPLAY_END"] = replay[1].isoformat()
    if explain_url is not None:
        env["VIGIL_SCORER_EXPLAIN_URL"] = explain_url
    argv = ["env", *(f"{k}={v}" for k, v in env.items()), venv_tool("vigil"), "serving", "scorer"]
    server = start_server(
        "scorer", argv, f"http://127.0.0.1:{port}", "/healthz", _logs(stack_path), 120, detach=True
    )
    return _record(stack_path, server, "/healthz")


def prometheus_config(targets: dict[str, list[str]], alertmanager: str | None = None) -> str:
    """monitoring/prometheus/prometheus.yml with the stack's actual scrape targets and
    Alertmanager (``host:port``; none: alerts are evaluated but sent nowhere)."""
    document = yaml.safe_load((MONITORING_PATH / "prometheus" / "prometheus.yml").read_text())
    document["rule_files"] = [
        str(MONITORING_PATH / "prometheus" / rule) for rule in document["rule_files"]
    ]
    if alertmanager is None:
        document.pop("alerting", None)
    else:
        document["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    jobs = []
    for job in document["scrape_configs"]:
        if job["job_name"] in targets:
            job["static_configs"] = [{"targets": targets[job["job_name"]]}]
            jobs.append(job)
    document["scrape_configs"] = jobs
    return yaml.safe_dump(document, sort_keys=False)


def start_prometheus(
    stack_path: Path, targets: dict[str, list[str]], alertmanager: str | None = None
) -> ServerProcess:
    """Prometheus scraping ``targets`` (job → host:port list) with the repository's rules,
    sending its alerts to ``alertmanager`` (``host:port``) when given."""
    root = stack_path / "prometheus"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    targets = {**targets, "prometheus": [f"127.0.0.1:{port}"]}
    config_path = root / "prometheus.yml"
    config_path.write_text(prometheus_config(targets, alertmanager))
    argv = [
        "prometheus",
        f"--config.file={config_path}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    server = start_server(
        "prometheus",
        argv,
        f"http://127.0.0.1:{port}",
        READY,
        _logs(stack_path),
        detach=True,
    )
    return _record(stack_path, server, READY)


def alertmanager_config() -> str:
    """monitoring/alertmanager/alertmanager.yml with its routes and inhibitions, and every
    receiver emptied: locally alerts are grouped, routed and listed by Alertmanager's API, and
    nothing leaves the machine (Slack, PagerDuty and the retrain relay's GitHub are not here)."""
    document = yaml.safe_load(ALERTMANAGER_CONFIG_PATH.read_text())
    document["receivers"] = [{"name": receiver["name"]} for receiver in document["receivers"]]
    return yaml.safe_dump(document, sort_keys=False)


def alertmanager_argv(config_path: Path, data_path: Path, port: int) -> list[str]:
    """Alertmanager on 127.0.0.1:``port`` with clustering off (no gossip port)."""
    return [
        "prometheus-alertmanager",
        f"--config.file={config_path}",
        f"--storage.path={data_path}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]


def start_alertmanager(stack_path: Path) -> ServerProcess:
    """Alertmanager on loopback with the repository's routing (``alertmanager_config``);
    clustering off, so it opens no gossip port."""
    root = stack_path / "alertmanager"
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "alertmanager.yml"
    config_path.write_text(alertmanager_config())
    port = free_port()
    argv = alertmanager_argv(config_path, root / "data", port)
    server = start_server(
        "alertmanager", argv, f"http://127.0.0.1:{port}", READY, _logs(stack_path), detach=True
    )
    return _record(stack_path, server, READY)


def _logs(stack_path: Path) -> Path:
    path = stack_path / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path
