"""The local Triton Inference Server: the ``tritonserver`` bundled in the PyTriton wheel.

Same server, same model repository, same protocol as production: KServe v2 over HTTP and
gRPC, Prometheus metrics (``nv_inference_*``), dynamic batching, instance groups, the model
names and tensors of ``contracts.serving``, and the artifacts ``build_repository`` wrote
(``xgboost.json``, ``model.onnx``), read from that repository.

How it differs from production, and why: the PyTriton wheel ships only Triton's Python
backend, not the FIL and ONNX Runtime backends. So for each model of the repository this
module writes a twin into a launch directory: the production ``config.pbtxt`` (parsed, not
copied as text) with only the backend changed to ``python``, its parameters replaced by the
path of the repository's artifact, and its instance groups pinned to the CPU; and
``serving/triton/python_model.py`` as the version's ``model.py``, which loads the
artifact with XGBoost or ONNX Runtime. Consequences:

- XGBoost predicts in place of FIL, and ONNX Runtime runs inside the Python backend instead
  of as Triton's own backend: outputs agree to float32 rounding, speed differs.
- NaN or infinite features are refused with a 400 here; FIL would treat NaN as a missing
  value. The feature contract has no nulls, so a NaN is a client bug. (Wrong shapes,
  dtypes, empty or oversized batches and unknown models are refused by Triton's core, the
  same in both.)
- Only a local repository directory is served (production reads ``s3://`` directly).
- Triton's admin APIs are open unless an admin key is given (``--admin-key-env``), as
  benchmarks read statistics here; the chart always restricts them, with the same
  ``restricted_api_args`` (a test checks they agree).

Run as a process, as tests and the demo do (``vigil.local_stack.triton_argv``; stop it with
SIGTERM to its PID)::

    vigil serving triton --repository DIR --http-port 8000 --grpc-port 8001 \
        --metrics-port 8002 [--admin-key-env VIGIL_TRITON_ADMIN_KEY]
"""

import ctypes
import ctypes.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from tritonclient.grpc import model_config_pb2 as mc

from contracts.ports import TRITON_GRPC_PORT, TRITON_HTTP_PORT, TRITON_METRICS_PORT
from serving.triton.config import parse_pbtxt, to_pbtxt

PYTHON_MODEL = Path(__file__).with_name("python_model.py")
READY_PATH = "/v2/health/ready"
# Seconds Triton waits for in-flight requests when asked to stop.
EXIT_TIMEOUT_SECONDS = 5
# Triton's API categories that answer only requests carrying the admin key: everything but
# health, metadata and inference (loading and unloading models, configs, statistics, trace,
# logging, shared-memory registration).
RESTRICTED_APIS = (
    "model-repository",
    "model-config",
    "statistics",
    "trace",
    "logging",
    "shared-memory",
)
# The HTTP header of the admin key; over gRPC Triton expects it as the metadata key
# ``triton-grpc-protocol-<header>``.
ADMIN_KEY_HEADER = "vigil-triton-admin"
GRPC_ADMIN_KEY_HEADER = f"triton-grpc-protocol-{ADMIN_KEY_HEADER}"
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class TritonPorts:
    """Where the server listens: KServe v2 HTTP and gRPC, and Prometheus metrics."""

    http: int = TRITON_HTTP_PORT
    grpc: int = TRITON_GRPC_PORT
    metrics: int = TRITON_METRICS_PORT


def restricted_api_args(admin_key: str) -> list[str]:
    """tritonserver options restricting ``RESTRICTED_APIS`` to requests whose
    ``ADMIN_KEY_HEADER`` is ``admin_key``, over HTTP and gRPC (the chart passes the same,
    with ``$(TRITON_ADMIN_KEY)`` expanded by Kubernetes from a Secret)."""
    restriction = f"{','.join(RESTRICTED_APIS)}:{ADMIN_KEY_HEADER}={admin_key}"
    return [f"--http-restricted-api={restriction}", f"--grpc-restricted-protocol={restriction}"]


def prepare_launch_repository(repository: Path, models_dir: Path, threads: int = 1) -> list[str]:
    """Write the Python-backend twin of every model in ``repository`` under ``models_dir``.

    Args:
        repository: a model repository written by ``build_repository``.
        models_dir: where the twins go (Triton's ``--model-repository``).
        threads: CPU threads each model instance predicts with.

    Returns:
        The model names, sorted.

    Raises:
        FileNotFoundError: the repository has no model, or a model's artifact is missing.
        ValueError: a config does not name exactly one version to serve.
    """
    configs = sorted(repository.glob("*/config.pbtxt"))
    if not configs:
        raise FileNotFoundError(f"{repository} holds no model (no */config.pbtxt)")
    names = []
    for config_path in configs:
        config = parse_pbtxt(config_path.read_text())
        versions = list(config.version_policy.specific.versions)
        if len(versions) != 1:
            raise ValueError(f"{config_path} must serve one specific version, got {versions}")
        version_dir = config_path.parent / str(versions[0])
        artifact = version_dir / config.default_model_filename
        if not artifact.is_file():
            raise FileNotFoundError(f"{config_path} serves {artifact}, which does not exist")
        twin = _python_twin(config, artifact.resolve(), threads)
        target = models_dir / config.name / str(versions[0])
        target.mkdir(parents=True)
        (models_dir / config.name / "config.pbtxt").write_text(to_pbtxt(twin))
        shutil.copyfile(PYTHON_MODEL, target / "model.py")
        names.append(config.name)
    return names


def run_triton(
    repository: Path,
    ports: TritonPorts,
    host: str = "127.0.0.1",
    threads: int = 1,
    admin_key: str | None = None,
) -> int:
    """Serve ``repository`` until SIGTERM or SIGINT; returns tritonserver's exit code. With
    ``admin_key``, the admin APIs (``RESTRICTED_APIS``) answer only requests carrying it."""
    with tempfile.TemporaryDirectory(prefix="vigil-triton-") as tmp:
        launch = Path(tmp)
        prepare_launch_repository(repository, launch / "models", threads)
        backends = _backend_directory(launch / "backends")
        argv = [
            str(_tritonserver_root() / "bin" / "tritonserver"),
            f"--model-repository={launch / 'models'}",
            f"--backend-directory={backends}",
            # Python-backend shared memory is named by this prefix: unique per server, so
            # two servers on one machine never share a region.
            f"--backend-config=python,shm-region-prefix-name=vigil_{os.getpid()}_",
            f"--http-address={host}",
            f"--http-port={ports.http}",
            f"--grpc-address={host}",
            f"--grpc-port={ports.grpc}",
            f"--metrics-address={host}",
            f"--metrics-port={ports.metrics}",
            "--disable-auto-complete-config",
            f"--exit-timeout-secs={EXIT_TIMEOUT_SECONDS}",
            *(restricted_api_args(admin_key) if admin_key else []),
        ]
        server = subprocess.Popen(argv, env=triton_environment(), preexec_fn=_die_with_parent)

        def forward(signum: int, _frame: FrameType | None) -> None:
            server.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        return server.wait()


def triton_environment() -> dict[str, str]:
    """This process's environment with what the bundled tritonserver needs.

    The interpreter's own libpython comes first on ``LD_LIBRARY_PATH`` (the Python backend
    stub otherwise loads another one and fails with ``'_thread.RLock' object has no attribute
    '_recursion_count'``), then the wheel's libraries. This interpreter's ``bin`` comes first
    on ``PATH``: the stub's embedded Python finds its prefix, and so this virtual
    environment's packages (numpy, XGBoost, ONNX Runtime), from the ``python3`` there.
    """
    env = dict(os.environ)
    libraries = [
        str(sysconfig.get_config_var("LIBDIR")),
        str(_tritonserver_root().parent.parent / "nvidia_pytriton.libs"),
    ]
    if env.get("LD_LIBRARY_PATH"):
        libraries.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(libraries)
    env["PATH"] = os.pathsep.join([str(Path(sys.exec_prefix) / "bin"), env.get("PATH", "")])
    return env


def _python_twin(config: mc.ModelConfig, artifact: Path, threads: int) -> mc.ModelConfig:
    twin = mc.ModelConfig()
    twin.CopyFrom(config)
    twin.backend = "python"
    twin.ClearField("default_model_filename")
    twin.ClearField("parameters")
    twin.parameters["artifact"].string_value = str(artifact)
    twin.parameters["threads"].string_value = str(threads)
    for group in twin.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_CPU
    return twin


def _tritonserver_root() -> Path:
    import pytriton

    return Path(pytriton.__file__).parent / "tritonserver"


def _backend_directory(target: Path) -> Path:
    """A backend directory holding the Python backend with the stub for this interpreter."""
    bundled = _tritonserver_root()
    python = target / "python"
    python.mkdir(parents=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        (python / name).symlink_to(bundled / "backends" / "python" / name)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = bundled / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise FileNotFoundError(f"the PyTriton wheel has no Python backend stub for {version}")
    (python / "triton_python_backend_stub").symlink_to(stub)
    return target


def _die_with_parent() -> None:
    """In the child: receive SIGTERM if this launcher dies, so no tritonserver is orphaned."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
