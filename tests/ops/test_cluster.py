"""The cluster definition (k8s/): node groups, IRSA, add-ons wired to the chart."""

from pathlib import Path
from typing import Any

import yaml

from tests.ops.conftest import CHART_PATH, REPO_PATH

K8S_PATH = REPO_PATH / "k8s"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_node_groups_and_oidc() -> None:
    cluster = load(K8S_PATH / "eksctl-cluster.yaml")
    assert cluster["apiVersion"] == "eksctl.io/v1alpha5"
    assert cluster["kind"] == "ClusterConfig"
    assert cluster["iam"]["withOIDC"] is True
    groups = {g["name"]: g for g in cluster["managedNodeGroups"]}
    sizes = {
        name: (g["instanceType"], g["minSize"], g["desiredCapacity"], g["maxSize"])
        for name, g in groups.items()
    }
    assert sizes == {
        "inference": ("t3.xlarge", 3, 3, 10),
        "gpu-t4": ("g4dn.xlarge", 1, 1, 3),
        "monitoring": ("t3.medium", 2, 2, 2),
    }
    gpu = groups["gpu-t4"]
    assert gpu["labels"]["gpu"] == "true"
    assert {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"} in gpu["taints"]


def test_chart_schedules_onto_the_node_groups() -> None:
    values = load(CHART_PATH / "values.yaml")
    groups = {g["name"]: g for g in load(K8S_PATH / "eksctl-cluster.yaml")["managedNodeGroups"]}
    assert values["triton"]["nodeSelector"].items() <= groups["inference"]["labels"].items()
    assert values["vllm"]["nodeSelector"].items() <= groups["gpu-t4"]["labels"].items()
    (taint,) = groups["gpu-t4"]["taints"]
    assert {**taint, "operator": "Equal"} in values["vllm"]["tolerations"]


def test_grafana_sidecar_finds_the_charts_dashboards() -> None:
    stack = load(K8S_PATH / "addons" / "kube-prometheus-stack-values.yaml")
    chart = load(CHART_PATH / "values.yaml")["monitoring"]["grafanaDashboards"]
    sidecar = stack["grafana"]["sidecar"]["dashboards"]
    assert sidecar["label"] == chart["label"]
    assert sidecar["labelValue"] == "1"
    assert sidecar["folderAnnotation"] == "grafana_folder"
    prometheus = stack["prometheus"]["prometheusSpec"]
    assert prometheus["scrapeInterval"] == "15s"
    assert prometheus["serviceMonitorSelectorNilUsesHelmValues"] is False
    assert prometheus["ruleSelectorNilUsesHelmValues"] is False


def test_addon_values_parse() -> None:
    for path in sorted((K8S_PATH / "addons").glob("*.yaml")):
        assert list(yaml.safe_load_all(path.read_text())), path.name
