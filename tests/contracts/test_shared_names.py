"""A name both sides of a contract must agree on (an MLflow artefact or tag, a header, a model
name, the drift binning rule) is written once, in the ``contracts`` module that defines it;
every other module imports it. The source tree is parsed and each string literal (docstrings
aside: prose may name what it describes) is checked against every shared value.

Distinctive values are copies wherever a literal holds them; the alias names wherever a
literal is one. Common words (``threshold``, ``anomaly``) are copies only where they name the
contract: as an MLflow tag, in a model URL, or bound to a module-level name (a second
definition).
"""

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal as Kind

import pytest

from contracts import drift_reference, serving

ROOT = Path(__file__).resolve().parents[2]
SOURCE_PACKAGES = ("contracts", "telemetry", "training", "serving", "rag", "vigil")


@dataclass(frozen=True)
class SharedName:
    module: str  # the module that defines it, e.g. "contracts.serving"
    constant: str
    # "contained": any literal holding the value; "equal": a literal that is the value;
    # "naming": a literal that is the value where it names the contract (a common word)
    match: Kind["contained", "equal", "naming"] = "contained"

    @property
    def value(self) -> str:
        defining = drift_reference if self.module == "contracts.drift_reference" else serving
        value: str = getattr(defining, self.constant)
        return value

    @property
    def path(self) -> Path:
        return ROOT / (self.module.replace(".", "/") + ".py")


SHARED = [
    SharedName("contracts.serving", "REFERENCE_ARTIFACT"),
    SharedName("contracts.serving", "DETECTOR_ARTIFACT"),
    SharedName("contracts.serving", "REPOSITORY_SUMMARY"),
    SharedName("contracts.serving", "THRESHOLD_TAG", "naming"),
    SharedName("contracts.serving", "XGBOOST_MODEL"),
    SharedName("contracts.serving", "CATBOOST_MODEL"),
    SharedName("contracts.serving", "CHAMPION", "equal"),
    SharedName("contracts.serving", "CHALLENGER", "equal"),
    SharedName("contracts.serving", "INPUT_TENSOR"),
    SharedName("contracts.serving", "OUTPUT_TENSOR"),
    SharedName("contracts.serving", "AB_MODEL", "naming"),
    SharedName("contracts.serving", "KEY_HEADER"),
    SharedName("contracts.serving", "ARM_HEADER"),
    SharedName("contracts.serving", "MODEL_HEADER"),
    SharedName("contracts.serving", "ASSIGNMENT_PATH"),
    SharedName("contracts.drift_reference", "BINNING"),
]
# (file, constant) -> why the copy stays.
ALLOWED = {
    ("serving/triton/python_model.py", "INPUT_TENSOR"): "runs in Triton's Python backend stub, "
    "where the vigil packages are not importable",
    ("serving/triton/python_model.py", "OUTPUT_TENSOR"): "runs in Triton's Python backend stub, "
    "where the vigil packages are not importable",
}


@dataclass(frozen=True)
class Literal:
    path: Path
    line: int
    text: str
    context: str  # "tag": an MLflow tag key; "binding": bound to a module-level name; "": other


def _docstrings(tree: ast.Module) -> set[int]:
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _contexts(tree: ast.Module) -> dict[int, str]:
    """id(literal) -> its context, for the literals whose context matters."""
    contexts: dict[int, str] = {}
    for node in tree.body:  # module level: NAME = "value"
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Constant):
            contexts[id(node.value)] = "binding"
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and _name_of(node.value).endswith("tags"):
            contexts[id(node.slice)] = "tag"
        elif isinstance(node, ast.Call) and "tag" in _name_of(node.func):
            for argument in node.args:
                contexts.setdefault(id(argument), "tag")
        elif isinstance(node, ast.Compare) and any(
            _name_of(c).endswith("tags") for c in node.comparators
        ):
            contexts[id(node.left)] = "tag"
    return contexts


def _name_of(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def literals(path: Path) -> Iterator[Literal]:
    """The string literals of a source file, f-string parts included, docstrings left out."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings, contexts = _docstrings(tree), _contexts(tree)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            yield Literal(path, node.lineno, node.value, contexts.get(id(node), ""))


def is_copy(name: SharedName, literal: Literal) -> bool:
    value, text = name.value.lower(), literal.text.lower()
    if name.match == "contained":
        return value in text
    if name.match == "equal":
        return text == value
    if text == value:
        return literal.context in {"tag", "binding"}
    return f"/models/{value}" in text  # the model in a KServe v2 URL


def source_files() -> list[Path]:
    return sorted(path for package in SOURCE_PACKAGES for path in (ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("name", SHARED, ids=lambda n: n.constant)
def test_a_shared_name_is_written_only_where_it_is_defined(name: SharedName) -> None:
    copies = [
        f"{literal.path.relative_to(ROOT)}:{literal.line}: {literal.text!r}"
        for path in source_files()
        if path != name.path
        for literal in literals(path)
        if is_copy(name, literal) and (str(path.relative_to(ROOT)), name.constant) not in ALLOWED
    ]
    assert copies == [], f"import {name.module}.{name.constant} instead"


@pytest.mark.parametrize("name", SHARED, ids=lambda n: n.constant)
def test_the_scan_finds_the_definition(name: SharedName) -> None:
    """Not vacuous: the defining module's own literal is seen, as a definition."""
    found = [literal for literal in literals(name.path) if literal.text == name.value]
    assert [literal.context for literal in found] == ["binding"]
    assert is_copy(name, found[0])
