"""The A/B router: nginx in front of Triton, configured from the Helm values' ``abTest``.

``render_nginx_conf`` fills ``templates/nginx.conf.j2`` with the weights, the sticky cookie,
the rate limit, the model of each arm (from the repository's summary) and the Triton
addresses. What the rendered nginx does:

- ``/v2/models/anomaly/...`` (HTTP): the client's arm is its ``ab_variant`` cookie, else a
  weighted ``split_clients`` draw (on ``X-AB-Key`` when sent, else on the request id); the
  path is rewritten to that arm's model, the first response sets the cookie, and every
  response names the arm and model in ``X-Vigil-Arm`` / ``X-Vigil-Model``.
- ``/ab/assignment``: the same decision as JSON, for gRPC clients (the model name is in the
  protobuf body, out of nginx's reach): they ask here, then call that model by name on the
  gRPC listener, which passes KServe v2 gRPC through to the Triton pool.
- Only the A/B endpoint's routes are exposed (``templates/ab_routes.conf.j2``, the list the
  chart's per-pod sidecar serves too): ``POST /v2/models/anomaly/infer``, ``GET
  /v2/models/anomaly`` (metadata) and ``/v2/health/{ready,live}``, plus ``/ab/assignment`` and
  Triton's ``/metrics`` here; any other path (``/v2/repository/*``, ``/v2/logging``, a model
  by its own name, ...) is answered 404. The gRPC listener passes only inference, metadata
  and health RPCs (403 otherwise). Inference routes are rate limited per client address (429
  past the burst).
- Keepalive pools of Triton servers; a failed request is replayed on the next server.
- An access log (``logs/access.log``, JSON lines) with the arm, model and upstream timings.

Run in the foreground (stop with ``kill -QUIT``; a weight change is a re-render plus
``reload_nginx``, which lets in-flight requests finish on the old workers)::

    vigil serving router --weights-from helm/vigil/values.yaml --repository DIR \
        --upstream 127.0.0.1:8000 --grpc-upstream 127.0.0.1:8001 \
        --metrics-upstream 127.0.0.1:8002 --port 8080 --grpc-port 8081 --prefix DIR

After a change to ``templates/ab_routes.conf.j2``, ``vigil serving router
--write-chart-routes`` rewrites the chart's copy (tests fail until it matches).
"""

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Self

import jinja2
import psutil
from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.ports import ROUTER_HTTP_PORT
from contracts.serving import AB_MODEL, ARM_HEADER, CHALLENGER, CHAMPION, KEY_HEADER, MODEL_HEADER
from serving.router.ab_config import AbTestConfig

if TYPE_CHECKING:
    # Only a type here: importing serving.triton.model_repository loads MLflow (seconds).
    from serving.triton.model_repository import RepositorySummary

TEMPLATE = "nginx.conf.j2"
ROUTES_TEMPLATE = "ab_routes.conf.j2"
# The chart's copy of the A/B routes (a Go template partial the sidecar's ConfigMap includes),
# written by write_chart_routes and drift-checked by tests/ops/test_chart.py.
CHART_ROUTES_PATH = (
    Path(__file__).resolve().parents[2] / "helm/vigil/templates/triton/_ab_routes.tpl"
)
CHART_ROUTES_DEFINE = "vigil.abRoutes"
CHART_PATHS_DEFINE = "vigil.abRoutePaths"  # the same routes' paths, for the Ingress rules
# KServe v2 gRPC methods the gRPC listener passes (inference, metadata, health); the
# repository, config, statistics, trace, logging and shared-memory RPCs are refused.
GRPC_METHODS = (
    "ModelInfer",
    "ModelMetadata",
    "ModelReady",
    "ServerLive",
    "ServerReady",
    "ServerMetadata",
)
CONF_FILE = "nginx.conf"
PID_FILE = "nginx.pid"
ACCESS_LOG = "logs/access.log"
LIVE_PATH = "/v2/health/live"
_ADDRESS = r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$"
_NAME = r"^[A-Za-z0-9_.\-]+$"


class RouterConfig(BaseModel):
    """Everything nginx.conf is rendered from."""

    model_config = ConfigDict(extra="forbid")

    ab: AbTestConfig
    champion_model: str = Field(pattern=_NAME)
    challenger_model: str | None = Field(None, pattern=_NAME)
    http_upstreams: list[str] = Field(min_length=1)  # Triton HTTP, host:port
    grpc_upstreams: list[str] = []  # Triton gRPC; none: no gRPC listener
    metrics_upstreams: list[str] = []  # Triton metrics; none: no /metrics
    host: str = Field("127.0.0.1", pattern=r"^[A-Za-z0-9.\-\[\]:]+$")
    http_port: int = Field(ROUTER_HTTP_PORT, gt=0, lt=65536)
    grpc_port: int | None = Field(None, gt=0, lt=65536)
    worker_processes: int | None = Field(None, gt=0)  # None: one per core

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        for address in [*self.http_upstreams, *self.grpc_upstreams, *self.metrics_upstreams]:
            if not _matches(_ADDRESS, address):
                raise ValueError(f"upstream {address!r} is not host:port")
        if self.ab.challenger_weight and self.challenger_model is None:
            raise ValueError(
                f"challengerWeight is {self.ab.challenger_weight} but no model holds the "
                f"{CHALLENGER!r} alias; register one or set abTest.challengerWeight to 0"
            )
        if bool(self.grpc_upstreams) != (self.grpc_port is not None):
            raise ValueError("a gRPC listener needs both grpc_port and grpc_upstreams")
        return self


def arm_models(summary: "RepositorySummary") -> tuple[str, str | None]:
    """The Triton model names holding ``champion`` and ``challenger`` (None: not set)."""
    champion = summary.model_for(CHAMPION)
    if champion is None:
        raise ValueError(f"the repository at {summary.uri} has no {CHAMPION!r} model")
    challenger = summary.model_for(CHALLENGER)
    return champion.name, challenger.name if challenger else None


def render_nginx_conf(config: RouterConfig) -> str:
    """nginx.conf for ``config`` (paths relative to the prefix nginx is started with)."""
    ab = config.ab
    arms = [(CHAMPION, config.champion_model, ab.champion_weight)]
    if config.challenger_model is not None:
        arms.append((CHALLENGER, config.challenger_model, ab.challenger_weight))
    weighted = [arm for arm, _, weight in arms if weight > 0]
    # split_clients: explicit percentages, then "*" for the rest (exactly 100 in total).
    split_lines = [f"{arm_weight}% {arm};" for arm, _, arm_weight in arms if arm_weight > 0]
    split_lines[-1] = f"* {weighted[-1]};"
    template = _environment().get_template(TEMPLATE)
    return template.render(
        worker_processes=config.worker_processes or "auto",
        ab_model=AB_MODEL,
        arm_header=ARM_HEADER,
        model_header=MODEL_HEADER,
        key_header=KEY_HEADER,
        key_variable="http_" + KEY_HEADER.lower().replace("-", "_"),
        cookie_name=ab.cookie.name,
        cookie_max_age=ab.cookie.max_age_seconds,
        sticky_arms=weighted,
        split_lines=split_lines,
        arm_models=[(arm, model) for arm, model, _ in arms],
        requests_per_second=ab.rate_limit.requests_per_second,
        burst=ab.rate_limit.burst,
        body_max_size=ab.request_body.max_size,
        body_buffer_size=ab.request_body.buffer_size,
        http_upstreams=config.http_upstreams,
        grpc_upstreams=config.grpc_upstreams,
        metrics_upstreams=config.metrics_upstreams,
        host=config.host,
        http_port=config.http_port,
        grpc_port=config.grpc_port,
        grpc_methods=GRPC_METHODS,
    )


def render_chart_routes() -> str:
    """The chart's partial ``_ab_routes.tpl``: the A/B routes of ``templates/ab_routes.conf.j2``
    as a Go-template ``define``, which the sidecar's nginx.conf includes in both arm listeners
    (each sets ``$vigil_arm`` / ``$vigil_model`` to its arm first), and their exact paths as a
    YAML list, the Ingress rules."""
    module = _environment().get_template(ROUTES_TEMPLATE).module
    routes = str(module.ab_routes(AB_MODEL, "triton", ARM_HEADER, MODEL_HEADER, [])).strip()  # type: ignore[attr-defined]
    paths = "\n".join(f"- {path}" for path in exposed_paths(routes))
    return (
        "{{- /*\n"
        f"Generated from serving/router/templates/{ROUTES_TEMPLATE} (vigil serving router\n"
        "--write-chart-routes): the routes the local router serves too. Do not edit;\n"
        "tests/ops/test_chart.py fails on drift.\n"
        "*/}}\n"
        f'{{{{- define "{CHART_ROUTES_DEFINE}" -}}}}\n{routes}\n{{{{- end }}}}\n\n'
        f'{{{{- define "{CHART_PATHS_DEFINE}" -}}}}\n{paths}\n{{{{- end }}}}\n'
    )


def exposed_paths(conf: str) -> list[str]:
    """The exact paths (``location = PATH``) an nginx config serves, in order."""
    return re.findall(r"^\s*location = (/\S*) \{", conf, flags=re.MULTILINE)


def write_chart_routes(path: Path = CHART_ROUTES_PATH) -> Path:
    """Write ``render_chart_routes()`` to the chart (after a change to the routes template)."""
    path.write_text(render_chart_routes())
    return path


def write_nginx_conf(config: RouterConfig, prefix: Path) -> Path:
    """Render ``config`` to ``prefix/nginx.conf`` and create the log and temp folders."""
    for folder in ("logs", "temp"):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    conf_path = prefix / CONF_FILE
    staged = conf_path.with_suffix(".conf.tmp")
    staged.write_text(render_nginx_conf(config))
    staged.replace(conf_path)  # a reload never reads a half-written file
    return conf_path


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise FileNotFoundError("nginx is not installed (apt-get install -y nginx)")
    return found


def nginx_argv(conf_path: Path, prefix: Path) -> list[str]:
    """The command that runs nginx in the foreground with ``conf_path`` under ``prefix``."""
    return [nginx_binary(), "-c", str(conf_path.resolve()), "-p", f"{prefix.resolve()}/"]


def check_nginx_conf(conf_path: Path, prefix: Path) -> None:
    """Raise ``ValueError`` with nginx's own message when ``nginx -t`` rejects the file."""
    result = subprocess.run(
        [*nginx_argv(conf_path, prefix), "-t", "-q"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise ValueError(f"nginx rejects {conf_path}:\n{result.stderr.strip()}")


def reload_nginx(prefix: Path, conf_path: Path | None = None, timeout: float = 10) -> None:
    """Load the (re-rendered) config into the nginx running under ``prefix``.

    The file is checked first, so a bad config raises here instead of being ignored by the
    running nginx. On ``-s reload`` nginx starts new workers with the new config and lets the
    old ones finish their in-flight requests; this returns once a new worker is up.

    Raises:
        ValueError: nginx rejects the config.
        RuntimeError: no nginx runs under ``prefix``, or no new worker started in time.
    """
    conf_path = conf_path or prefix / CONF_FILE
    check_nginx_conf(conf_path, prefix)
    master = _master(prefix)
    before = {child.pid for child in master.children()}
    subprocess.run([*nginx_argv(conf_path, prefix), "-s", "reload"], check=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.pid not in before for child in master.children()):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nginx under {prefix} started no new worker within {timeout}s")


def prepare_nginx(config: RouterConfig, prefix: Path) -> list[str]:
    """Render ``config`` under ``prefix``, check it with ``nginx -t``, and return the command
    that runs nginx on it in the foreground (``vigil serving router`` and the local stack)."""
    conf_path = write_nginx_conf(config, prefix)
    check_nginx_conf(conf_path, prefix)
    return nginx_argv(conf_path, prefix)


def _master(prefix: Path) -> psutil.Process:
    pid_path = prefix / PID_FILE
    try:
        return psutil.Process(int(pid_path.read_text()))
    except (FileNotFoundError, ValueError, psutil.NoSuchProcess) as error:
        raise RuntimeError(f"no nginx runs under {prefix} ({pid_path}: {error})") from error


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # nginx.conf, not HTML; every value is validated by RouterConfig
    )


def _matches(pattern: str, value: str) -> bool:
    return re.fullmatch(pattern, value) is not None
