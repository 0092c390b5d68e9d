"""Dependencies point one way: ``contracts`` at the bottom imports no other Vigil package;
``telemetry`` (the data plane) sits on it; ``training``, ``serving`` and ``rag`` sit on both and
never import each other; nothing below imports ``vigil`` (the command line on top). Every
import counts, also one inside a function or under ``TYPE_CHECKING``."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contracts", "telemetry", "training", "serving", "rag", "vigil")
# package -> the packages it must not import
FORBIDDEN = {
    "contracts": ("telemetry", "training", "serving", "rag", "vigil"),
    "telemetry": ("training", "serving", "rag", "vigil"),
    "training": ("vigil", "serving", "rag"),
    "serving": ("vigil", "training", "rag"),
    "rag": ("vigil", "training", "serving"),
}


def imported_modules(path: Path) -> list[tuple[str, int]]:
    """(absolute module, line) of every import in a source file; relative ones resolved."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((module, node.lineno))
    return found


def back_arrows(package: str, target: str) -> list[str]:
    """``file:line imports module`` for each import of ``target`` inside ``package``."""
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for module, line in imported_modules(path)
        if module.split(".")[0] == target
    ]


CASES = [
    pytest.param(package, target, id=f"{package}-imports-{target}")
    for package, targets in FORBIDDEN.items()
    for target in targets
]


@pytest.mark.parametrize(("package", "target"), CASES)
def test_no_back_arrow(package: str, target: str) -> None:
    assert back_arrows(package, target) == []


def test_the_scan_sees_imports() -> None:
    """The scan is not vacuous: it finds the imports every package makes of ``contracts``."""
    for package in PACKAGES[1:]:
        assert back_arrows(package, "contracts"), package
