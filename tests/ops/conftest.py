"""The chart rendered offline (helm-python-sdk, Helm's own engine) for every values file."""

from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

REPO_PATH = Path(__file__).resolve().parents[2]
CHART_PATH = REPO_PATH / "helm" / "vigil"
RELEASE = "vigil"
NAMESPACE = "vigil"
# Every values file a deployment or CI uses: defaults, the environments, the CI scenarios.
VALUES_FILES = (
    None,
    CHART_PATH / "values-staging.yaml",
    CHART_PATH / "values-prod.yaml",
    *sorted((CHART_PATH / "ci").glob("*-values.yaml")),
)

Manifest = dict[str, Any]


def values_id(path: Path | None) -> str:
    return "defaults" if path is None else str(path.relative_to(CHART_PATH))


def load_values(path: Path | None) -> dict[str, Any]:
    return {} if path is None else yaml.safe_load(path.read_text()) or {}


def render(values: dict[str, Any]) -> list[Manifest]:
    """Every object the chart renders with ``values`` over values.yaml (like helm template)."""
    chart = helm_python.Chart.load(str(CHART_PATH))
    try:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    finally:
        chart.close()
    manifests = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        manifests += [doc for doc in yaml.safe_load_all(text) if doc]
    return manifests


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Manifest]]:
    """The manifests of every values file, by values-file id (rendered once per session)."""
    return {values_id(path): render(load_values(path)) for path in VALUES_FILES}


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def pod_spec(manifest: Manifest) -> dict[str, Any] | None:
    """The pod template of a workload (Deployment, StatefulSet, CronJob, DaskCluster parts)."""
    spec = manifest.get("spec", {})
    if manifest["kind"] in ("Deployment", "StatefulSet", "Job"):
        return spec["template"]["spec"]  # type: ignore[no-any-return]
    if manifest["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[no-any-return]
    return None
