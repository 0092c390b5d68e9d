"""The helm/vigil chart: valid Kubernetes objects for every values file, lint-clean, secure
defaults, the flows it promises, and one source of truth for what it shares with the code."""

import base64
import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_schemas
from referencing import Registry, Resource

from contracts.auth import SECRET_KEY
from contracts.ports import (
    EXPLAINER_PORT,
    MLFLOW_PORT,
    RELAY_PORT,
    SCORER_PORT,
    TRITON_GRPC_PORT,
    TRITON_HTTP_PORT,
    TRITON_METRICS_PORT,
)
from contracts.serving import AB_MODEL, ASSIGNMENT_PATH
from serving.router.ab_config import load_ab_config
from serving.router.nginx import (
    CHART_ROUTES_PATH,
    LIVE_PATH,
    RouterConfig,
    exposed_paths,
    render_chart_routes,
    render_nginx_conf,
)
from serving.triton.server import READY_PATH, RESTRICTED_APIS, restricted_api_args
from tests.ops.conftest import (
    CHART_PATH,
    REPO_PATH,
    VALUES_FILES,
    Manifest,
    find,
    pod_spec,
    render,
    values_id,
)

# The chart targets EKS 1.29 onwards (Chart.yaml kubeVersion); k8s/eksctl-cluster.yaml runs 1.31.
KUBE_VERSIONS = ("1.29.0", "1.31.0")
# Custom resources with no schema in kubernetes-validate, checked structurally below instead.
CUSTOM_KINDS = {"PrometheusRule", "ServiceMonitor", "DaskCluster"}
VALUES_IDS = [values_id(path) for path in VALUES_FILES]


@functools.cache
def kubernetes_validator(version: str, kind: str, api_version: str) -> jsonschema.Validator:
    """kubernetes-validate's strict schema for one kind, built once: its ``validate`` rebuilds
    the schema registry on every call (~45 ms an object; this way ~2 ms)."""
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = kubernetes_schemas.schema_contents(f"{folder}/{kind.lower()}-{group}.json", version)
    definitions = kubernetes_schemas.schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize("values_file", VALUES_IDS)
def test_every_object_is_valid_for_kubernetes(
    rendered: dict[str, list[Manifest]], values_file: str
) -> None:
    manifests = rendered[values_file]
    assert manifests
    for manifest in manifests:
        if manifest["kind"] in CUSTOM_KINDS:
            continue
        for version in KUBE_VERSIONS:
            # strict: unknown fields (a typo in a template) fail too.
            validator = kubernetes_validator(version, manifest["kind"], manifest["apiVersion"])
            validator.validate(manifest)
        assert manifest["metadata"]["namespace"] == "vigil", manifest["metadata"]["name"]


def test_helm_lint_strict_is_clean() -> None:
    report = helm_python.lint(str(CHART_PATH), strict=True, kube_version="v1.29.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # warnings and errors
    assert not report["errors"], report
    assert not problems, report


def test_values_are_checked_against_the_schema() -> None:
    with pytest.raises(helm_python.HelmValuesError, match="triton"):
        render({"triton": {"replica": 3}})  # a typo of replicas
    with pytest.raises(helm_python.HelmValuesError, match="challengerWeight"):
        render({"abTest": {"championWeight": 70, "challengerWeight": 130}})


def test_every_values_key_has_a_comment() -> None:
    """prometheus-community style: a comment above every key (keys inside a list item, such as
    a toleration's fields, are described by the comment above the list)."""
    uncommented = []
    previous = ""
    item_indent = -1  # indentation of the keys of the list item being read
    for number, line in enumerate((CHART_PATH / "values.yaml").read_text().splitlines(), 1):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped and not stripped.startswith("#") and indent < item_indent:
            item_indent = -1
        if stripped.startswith("- "):
            item_indent = indent + 2
        elif (
            stripped
            and not stripped.startswith("#")
            and ":" in stripped
            and indent != item_indent
            and not previous.startswith("#")
        ):
            uncommented.append(f"values.yaml:{number}: {stripped}")
        previous = stripped
    assert not uncommented, "\n".join(uncommented)


def test_schema_knows_every_values_key() -> None:
    schema = json.loads((CHART_PATH / "values.schema.json").read_text())
    values = yaml.safe_load((CHART_PATH / "values.yaml").read_text())

    def missing(value: Any, node: dict[str, Any], path: str) -> list[str]:
        if not isinstance(value, dict) or "properties" not in node:
            return []
        gaps = []
        for key, child in value.items():
            if key not in node["properties"]:
                gaps.append(f"{path}{key}")
            else:
                gaps += missing(child, node["properties"][key], f"{path}{key}.")
        return gaps

    assert missing(values, schema, "") == []


# --- one source of truth -----------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_IDS)
def test_canary_weight_is_the_ab_challenger_weight(
    rendered: dict[str, list[Manifest]], values_file: str
) -> None:
    """The ingress-nginx canary takes abTest.challengerWeight, the weight serving/router/nginx.py
    renders locally: one value, read by both."""
    path = dict(zip(VALUES_IDS, VALUES_FILES, strict=True))[values_file]
    merged = CHART_PATH / "values.yaml"
    ab = load_ab_config(merged)
    overrides = (yaml.safe_load(path.read_text()) or {}) if path else {}
    challenger_weight = overrides.get("abTest", {}).get("challengerWeight", ab.challenger_weight)
    ingresses = [m for m in rendered[values_file] if m["kind"] == "Ingress"]
    canaries = [
        m
        for m in ingresses
        if m["metadata"]["annotations"].get("nginx.ingress.kubernetes.io/canary") == "true"
    ]
    if not ingresses or challenger_weight == 0:
        assert canaries == []
        return
    (canary,) = canaries
    annotations = canary["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == str(challenger_weight)
    assert annotations["nginx.ingress.kubernetes.io/session-cookie-name"] == ab.cookie.name


def test_canary_weight_follows_the_values() -> None:
    manifests = render({"abTest": {"championWeight": 55, "challengerWeight": 45}})
    canary = find(manifests, "Ingress", "vigil-ab-challenger")
    assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "45"
    scorer = find(manifests, "Deployment", "vigil-scorer")
    env = {e["name"]: e.get("value") for e in pod_spec(scorer)["containers"][0]["env"]}  # type: ignore[index]
    assert env["VIGIL_SCORER_CHAMPION_WEIGHT"] == "55"


def test_body_sizes_are_the_local_routers(tmp_path: Path) -> None:
    """abTest.requestBody sizes reach the ingress, the in-pod nginx and the local nginx."""
    manifests = render({"abTest": {"requestBody": {"maxSize": "32m", "bufferSize": "4m"}}})
    champion = find(manifests, "Ingress", "vigil-ab-champion")
    annotations = champion["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == "32m"
    assert annotations["nginx.ingress.kubernetes.io/client-body-buffer-size"] == "4m"
    config_maps = [m for m in manifests if m["kind"] == "ConfigMap"]
    in_pod = "".join(str(m.get("data", "")) for m in config_maps)
    assert "client_max_body_size 32m;" in in_pod
    assert "client_body_buffer_size 4m;" in in_pod
    values = yaml.safe_load((CHART_PATH / "values.yaml").read_text())
    values["abTest"]["requestBody"] = {"maxSize": "32m", "bufferSize": "4m"}
    values_path = tmp_path / "values.yaml"
    values_path.write_text(yaml.safe_dump(values))
    local = render_nginx_conf(
        RouterConfig(
            ab=load_ab_config(values_path),
            champion_model="xgboost_anomaly",
            challenger_model="catboost_anomaly",
            http_upstreams=["127.0.0.1:8000"],
        )
    )
    assert "client_max_body_size 32m;" in local
    assert "client_body_buffer_size 4m;" in local


def test_weights_that_do_not_sum_to_100_are_refused() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="must be 100"):
        render({"abTest": {"championWeight": 60, "challengerWeight": 30}})


def test_each_arm_reaches_its_own_model(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["defaults"]
    config = find(manifests, "ConfigMap", "vigil-ab-router")["data"]["nginx.conf"]
    for arm, port, model in (
        ("champion", 8080, "xgboost_anomaly"),
        ("challenger", 8081, "catboost_anomaly"),
    ):
        service = find(manifests, "Service", f"vigil-ab-{arm}")
        assert service["spec"]["ports"][0]["targetPort"] == arm
        block = _sidecar_server(config, port)
        assert f"set $vigil_arm {arm};" in block
        assert f"set $vigil_model {model};" in block
        assert "rewrite ^ /v2/models/$vigil_model/infer break;" in block


# --- exposure: only the A/B routes ----------------------------------------------------------

# What the A/B endpoint serves, by exact path: the A/B model's inference and metadata (the
# load test and clients read the feature count there), and health.
AB_PATHS = [f"/v2/models/{AB_MODEL}/infer", f"/v2/models/{AB_MODEL}", READY_PATH, LIVE_PATH]


def _sidecar_server(config: str, port: int) -> str:
    """The server block of the sidecar's listener on ``port``."""
    return config.split(f"listen {port};")[1].split("    server {")[0]


def _locations(block: str) -> list[str]:
    return re.findall(r"^\s*location (.+?) \{", block, flags=re.MULTILINE)


def test_chart_routes_are_the_local_routers() -> None:
    """The sidecar's routes are generated from the local router's template (one list)."""
    assert CHART_ROUTES_PATH.read_text() == render_chart_routes(), (
        "helm/vigil/templates/triton/_ab_routes.tpl is stale: vigil serving router "
        "--write-chart-routes"
    )


@pytest.mark.parametrize("values_file", ["defaults", "ci/champion-only-values.yaml"])
def test_sidecar_serves_only_the_ab_routes(
    rendered: dict[str, list[Manifest]], values_file: str
) -> None:
    config = find(rendered[values_file], "ConfigMap", "vigil-ab-router")["data"]["nginx.conf"]
    values = yaml.safe_load((CHART_PATH / "values.yaml").read_text())["triton"]["abRouter"]
    for port in (values["championPort"], values["challengerPort"]):
        block = _sidecar_server(config, port)
        assert _locations(block) == [
            "= /nginx-health",
            *(f"= {path}" for path in AB_PATHS),
            "/",  # the catch-all, which refuses
        ]
        catch_all = block.split("location / {")[1].split("}")[0]
        assert catch_all.strip().startswith("return 404 ")
        assert "proxy_pass" not in catch_all
        infer = block.split(f"location = /v2/models/{AB_MODEL}/infer {{")[1]
        assert infer.split("}")[0].split("{")[0].strip() == "limit_except POST"
    assert "/v2/repository" not in config
    assert "/v2/models/xgboost_anomaly" not in config  # no model by its own name


@pytest.mark.parametrize("values_file", ["defaults", "values-prod.yaml"])
def test_ingress_exposes_only_the_ab_routes(
    rendered: dict[str, list[Manifest]], values_file: str
) -> None:
    local = render_nginx_conf(
        RouterConfig(
            ab=load_ab_config(),
            champion_model="xgboost_anomaly",
            challenger_model="catboost_anomaly",
            http_upstreams=["127.0.0.1:8000"],
        )
    )
    # The local router adds its own assignment path (and /metrics when given a metrics pool).
    assert [p for p in exposed_paths(local) if p != ASSIGNMENT_PATH] == AB_PATHS
    ingresses = [m for m in rendered[values_file] if m["kind"] == "Ingress"]
    assert len(ingresses) == 2
    for ingress in ingresses:
        (rule,) = ingress["spec"]["rules"]
        paths = rule["http"]["paths"]
        assert [(p["path"], p["pathType"]) for p in paths] == [(p, "Exact") for p in AB_PATHS]


def test_triton_admin_apis_need_the_admin_key(rendered: dict[str, list[Manifest]]) -> None:
    """Triton restricts its admin APIs with the same options the local Triton is tested with
    (tests/serving/triton/test_triton_restricted_api.py), the key coming from a Secret."""
    manifests = rendered["defaults"]
    container = pod_spec(find(manifests, "Deployment", "vigil-triton"))["containers"][0]  # type: ignore[index]
    restricted = [a for a in container["args"] if "restricted" in a]
    assert restricted == restricted_api_args("$(TRITON_ADMIN_KEY)")
    assert set(RESTRICTED_APIS) >= {
        "model-repository",
        "logging",
        "trace",
        "shared-memory",
        "statistics",
    }
    env = {e["name"]: e for e in container["env"]}
    reference = env["TRITON_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": "vigil-triton-admin", "key": "admin-key"}
    secret = find(manifests, "Secret", "vigil-triton-admin")
    assert len(base64.b64decode(secret["data"]["admin-key"])) == 40
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    existing = render({"triton": {"adminKey": {"existingSecret": "ops-triton-admin"}}})
    container = pod_spec(find(existing, "Deployment", "vigil-triton"))["containers"][0]  # type: ignore[index]
    env = {e["name"]: e for e in container["env"]}
    assert env["TRITON_ADMIN_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "ops-triton-admin"
    assert not [m for m in existing if m["kind"] == "Secret" and "triton" in m["metadata"]["name"]]


# --- the API key of the write endpoints -------------------------------------------------------

# Every service that guards a write endpoint or calls one, and the env vars it reads the key
# from (serving/scorer/settings.py, rag/settings.py, vigil/relay.py).
API_KEY_READERS = {
    "vigil-scorer": {"VIGIL_SCORER_API_KEY", "VIGIL_SCORER_EXPLAIN_API_KEY"},
    "vigil-explainer": {"VIGIL_RAG_API_KEY"},
    "vigil-retrain-relay": {"VIGIL_RELAY_API_KEY"},
}


def _secret_refs(manifests: list[Manifest], deployment: str) -> dict[str, dict[str, str]]:
    container = pod_spec(find(manifests, "Deployment", deployment))["containers"][0]  # type: ignore[index]
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_every_write_service_reads_the_one_api_key_by_default(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["defaults"]
    secret = find(manifests, "Secret", "vigil-api-key")
    assert list(secret["data"]) == [SECRET_KEY]
    token = base64.b64decode(secret["data"][SECRET_KEY]).decode()
    assert re.fullmatch(r"[A-Za-z0-9]{40}", token)
    # An upgrade reads the token back (lookup) and an uninstall leaves it in place.
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    template = (CHART_PATH / "templates" / "_helpers.tpl").read_text()
    assert 'lookup "v1" "Secret"' in template
    for deployment, names in API_KEY_READERS.items():
        refs = _secret_refs(manifests, deployment)
        for name in names:
            assert refs[name] == {"name": "vigil-api-key", "key": SECRET_KEY}, (deployment, name)


def test_an_upgrade_keeps_the_generated_token(tmp_path: Path) -> None:
    """On upgrade the chart reads the live Secret back (``lookup``) instead of drawing a new
    token. Offline rendering has no cluster, so a copy of the chart answers the lookup from
    the values instead; the rest of the template is the chart's own."""
    chart = tmp_path / "vigil"
    shutil.copytree(CHART_PATH, chart)
    (chart / "values.schema.json").unlink()  # the fake live objects are not chart values
    helpers = chart / "templates" / "_helpers.tpl"
    call = 'lookup "v1" "Secret" .root.Release.Namespace .name'
    assert call in helpers.read_text()
    helpers.write_text(helpers.read_text().replace(call, "index .root.Values.live .name"))
    live = base64.b64encode(b"k" * 40).decode()
    loaded = helm_python.Chart.load(str(chart))
    try:
        rendered = loaded.render(
            {"live": {"vigil-api-key": {"data": {SECRET_KEY: live}}}},
            name="vigil",
            namespace="vigil",
        )
    finally:
        loaded.close()
    secrets = {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(rendered["vigil/templates/secrets.yaml"])
        if doc
    }
    assert secrets["vigil-api-key"]["data"] == {SECRET_KEY: live}
    # No live Secret: a new token.
    assert len(base64.b64decode(secrets["vigil-triton-admin"]["data"]["admin-key"])) == 40


def test_an_existing_secret_replaces_the_generated_one() -> None:
    manifests = render({"apiKey": {"existingSecret": "ops-vigil-api-key"}})
    assert not [m for m in manifests if m["metadata"]["name"] == "vigil-api-key"]
    for deployment, names in API_KEY_READERS.items():
        refs = _secret_refs(manifests, deployment)
        for name in names:
            assert refs[name] == {"name": "ops-vigil-api-key", "key": SECRET_KEY}


def test_the_per_service_key_values_are_gone() -> None:
    """One source: the old per-service Secret values are refused, not silently ignored."""
    with pytest.raises(helm_python.HelmValuesError, match="explainApiKeySecret"):
        render({"scorer": {"explainApiKeySecret": ""}})
    with pytest.raises(helm_python.HelmValuesError, match="apiKeySecret"):
        render({"explainer": {"apiKeySecret": ""}})


def test_no_token_value_in_the_values() -> None:
    """values.yaml names Secrets, never holds a key or token: every value under a key that
    mentions a key, token, secret or password is empty or a lowercase Kubernetes name (the
    chart's tokens are 40 mixed-case characters)."""
    values = yaml.safe_load((CHART_PATH / "values.yaml").read_text())
    assert values["apiKey"] == {"existingSecret": ""}

    def leaves(node: Any, path: str) -> list[tuple[str, Any]]:
        if isinstance(node, dict):
            return [leaf for k, v in node.items() for leaf in leaves(v, f"{path}.{k}")]
        if isinstance(node, list):
            return [leaf for i, v in enumerate(node) for leaf in leaves(v, f"{path}[{i}]")]
        return [(path, node)]

    sensitive = [
        (path, value)
        for path, value in leaves(values, "")
        if re.search(r"key|token|secret|password", path, re.IGNORECASE)
    ]
    assert len(sensitive) >= 5  # the scan does look at something
    for path, value in sensitive:
        name = re.fullmatch(r"[a-z0-9]([a-z0-9./-]{0,61}[a-z0-9])?", str(value))
        assert value in ("", None) or name, (path, value)


def test_triton_ports_are_the_serving_contract(rendered: dict[str, list[Manifest]]) -> None:
    triton = find(rendered["defaults"], "Deployment", "vigil-triton")
    container = pod_spec(triton)["containers"][0]  # type: ignore[index]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "http": TRITON_HTTP_PORT,
        "grpc": TRITON_GRPC_PORT,
        "metrics": TRITON_METRICS_PORT,
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert "--model-repository=s3://" in " ".join(container["args"])


def test_chart_ports_are_the_code_defaults() -> None:
    """Each server listens in the cluster where the code's defaults expect it
    (contracts/ports.py): values.yaml is the chart's single source."""
    from serving.scorer.settings import ScorerSettings

    values = yaml.safe_load((CHART_PATH / "values.yaml").read_text())
    assert values["triton"]["ports"] == {
        "http": TRITON_HTTP_PORT,
        "grpc": TRITON_GRPC_PORT,
        "metrics": TRITON_METRICS_PORT,
    }
    assert values["scorer"]["port"] == ScorerSettings.model_fields["port"].default == SCORER_PORT
    assert values["explainer"]["port"] == EXPLAINER_PORT
    assert values["retrainRelay"]["port"] == RELAY_PORT
    assert values["mlflow"]["port"] == MLFLOW_PORT


def test_monitoring_copies_match_monitoring() -> None:
    """The chart deploys copies of monitoring/ (Helm reads only files inside the chart)."""
    result = subprocess.run(
        [sys.executable, "helm/sync_monitoring.py", "--check"],
        capture_output=True,
        text=True,
        cwd=REPO_PATH,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_rules_and_dashboards_are_deployed_from_monitoring(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["defaults"]
    for rules_path in sorted((REPO_PATH / "monitoring/prometheus/rules").glob("*.rules.yml")):
        name = f"vigil-monitoring-{rules_path.name.removesuffix('.rules.yml')}"
        rule = find(manifests, "PrometheusRule", name)
        assert rule["spec"] == yaml.safe_load(rules_path.read_text())
    for dashboard_path in sorted((REPO_PATH / "monitoring/grafana/dashboards").glob("*.json")):
        config_map = find(manifests, "ConfigMap", f"vigil-monitoring-{dashboard_path.stem}")
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        deployed = json.loads(config_map["data"][dashboard_path.name])
        assert deployed == json.loads(dashboard_path.read_text())


# --- wiring: selectors, monitors, jobs --------------------------------------------------


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("values_file", VALUES_IDS)
def test_services_and_monitors_reach_real_ports(
    rendered: dict[str, list[Manifest]], values_file: str
) -> None:
    manifests = rendered[values_file]
    pods = [
        (m["spec"]["template"]["metadata"]["labels"], m["spec"]["template"]["spec"])
        for m in manifests
        if m["kind"] in ("Deployment", "StatefulSet")
    ]
    services = [m for m in manifests if m["kind"] == "Service"]
    for service in services:
        backends = [
            spec for labels, spec in pods if _labels_match(service["spec"]["selector"], labels)
        ]
        assert backends, f"Service {service['metadata']['name']} selects no pods"
        port_names = {
            p["name"] for spec in backends for c in spec["containers"] for p in c["ports"]
        }
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)
    for monitor in (m for m in manifests if m["kind"] == "ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        targets = [s for s in services if _labels_match(selector, s["metadata"]["labels"])]
        assert targets, f"ServiceMonitor {monitor['metadata']['name']} selects no Service"
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["interval"] == "15s"
            assert all(endpoint["port"] in {p["name"] for p in t["spec"]["ports"]} for t in targets)


def test_jobs_run_on_their_schedules(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["defaults"]
    schedules = {
        m["metadata"]["name"]: (m["spec"]["schedule"], m["spec"]["concurrencyPolicy"])
        for m in manifests
        if m["kind"] == "CronJob"
    }
    assert schedules == {
        "vigil-exporter": ("*/5 * * * *", "Forbid"),
        "vigil-features": ("15 * * * *", "Forbid"),
        "vigil-retrain": ("0 2 * * 0", "Forbid"),
    }
    assert find(manifests, "CronJob", "vigil-retrain")["spec"]["timeZone"] == "Etc/UTC"


def test_dask_engine_runs_on_the_charts_dask_cluster(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["ci/dask-values.yaml"]
    cluster = find(manifests, "DaskCluster", "vigil-dask")
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    assert cluster["spec"]["worker"]["replicas"] == 3
    training_config = yaml.safe_load(
        find(manifests, "ConfigMap", "vigil-retrain")["data"]["config.yaml"]
    )
    assert training_config == {"engine": "dask"}
    features = pod_spec(find(manifests, "CronJob", "vigil-features"))["containers"][0]  # type: ignore[index]
    assert "--engine dask" in features["args"][-1]
    retrain = pod_spec(find(manifests, "CronJob", "vigil-retrain"))["containers"][0]  # type: ignore[index]
    # Both jobs find the scheduler through one setting: Dask's own.
    for job in (features, retrain):
        assert {
            "name": "DASK_SCHEDULER_ADDRESS",
            "value": "tcp://vigil-dask-scheduler:8786",
        } in job["env"]
    with pytest.raises(helm_python.HelmRenderError, match=r"dask\.enabled is false"):
        render({"retrain": {"engine": "dask"}})


def test_vllm_gets_a_t4_gpu_and_its_weights_volume(rendered: dict[str, list[Manifest]]) -> None:
    manifests = rendered["values-prod.yaml"]
    spec = pod_spec(find(manifests, "Deployment", "vigil-vllm"))
    assert spec is not None
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == {"gpu": "true"}
    assert {
        "key": "nvidia.com/gpu",
        "operator": "Equal",
        "value": "true",
        "effect": "NoSchedule",
    } in spec["tolerations"]
    pvc = find(manifests, "PersistentVolumeClaim", "vigil-llm-models")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "50Gi"
    qdrant = find(manifests, "StatefulSet", "vigil-qdrant")
    assert (
        qdrant["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        == "20Gi"
    )


def test_triton_scales_between_3_and_10_on_cpu(rendered: dict[str, list[Manifest]]) -> None:
    hpa = find(rendered["values-prod.yaml"], "HorizontalPodAutoscaler", "vigil-triton")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 10)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


# --- security -----------------------------------------------------------------------------


@pytest.mark.parametrize("values_file", VALUES_IDS)
def test_pods_run_non_root_on_read_only_roots_without_aws_keys(
    rendered: dict[str, list[Manifest]], values_file: str
) -> None:
    for manifest in rendered[values_file]:
        spec = pod_spec(manifest)
        if spec is None:
            continue
        name = manifest["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["serviceAccountName"] == name or manifest["kind"] == "Deployment", name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            env_names = {e["name"] for e in container.get("env", [])}
            assert not env_names & {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, name
            secret_values = [
                e for e in container.get("env", []) if "TOKEN" in e["name"] or "KEY" in e["name"]
            ]
            assert all("valueFrom" in e for e in secret_values), (name, secret_values)


def test_aws_access_comes_from_irsa_roles(rendered: dict[str, list[Manifest]]) -> None:
    accounts = {
        m["metadata"]["name"]: m["metadata"].get("annotations", {})
        for m in rendered["values-prod.yaml"]
        if m["kind"] == "ServiceAccount"
    }
    for component in ("triton", "scorer", "exporter", "features", "retrain", "mlflow", "dask"):
        role = accounts[f"vigil-{component}"]["eks.amazonaws.com/role-arn"]
        assert role.startswith("arn:aws:iam::")
        assert role.endswith(f"vigil-prod-{component}")
    assert "eks.amazonaws.com/role-arn" not in accounts["vigil-vllm"]


def test_network_is_default_deny_with_only_the_design_flows(
    rendered: dict[str, list[Manifest]],
) -> None:
    policies = {
        m["metadata"]["name"]: m["spec"]
        for m in rendered["defaults"]
        if m["kind"] == "NetworkPolicy"
    }
    deny = policies["vigil-network-default-deny"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}

    def sources(policy: str) -> list[str]:
        return [
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
            or peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for rule in policies[policy].get("ingress", [])
            for peer in rule["from"]
        ]

    assert sorted(sources("vigil-triton")) == ["ingress-nginx", "monitoring", "scorer"]
    assert sources("vigil-qdrant") == ["explainer"]
    assert sorted(sources("vigil-vllm")) == ["explainer", "monitoring"]
    assert sorted(sources("vigil-mlflow")) == ["retrain", "scorer"]
    assert sources("vigil-retrain-relay") == ["monitoring"]
    assert policies["vigil-exporter"]["ingress"] == []


def test_relay_is_where_alertmanager_posts(rendered: dict[str, list[Manifest]]) -> None:
    receivers = yaml.safe_load((REPO_PATH / "monitoring/alertmanager/alertmanager.yml").read_text())
    (relay,) = [r for r in receivers["receivers"] if r["name"] == "retrain-relay"]
    url = relay["webhook_configs"][0]["url"]
    service = find(rendered["defaults"], "Service", "vigil-retrain-relay")
    host, port = url.split("//")[1].split("/")[0].split(":")
    assert host.split(".")[0] == service["metadata"]["name"]
    assert int(port) == service["spec"]["ports"][0]["port"]


def test_workload_images_are_pinned(rendered: dict[str, list[Manifest]]) -> None:
    for manifest in rendered["values-prod.yaml"]:
        spec = pod_spec(manifest)
        for container in spec["containers"] if spec else []:
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1], image
            assert not image.endswith(":latest"), image


# --- the log watcher and its subscription filter ------------------------------------------


def _parse_vigil_args(args: list[str]) -> dict[str, Any]:
    """Parse a container's ``vigil logs ...`` arguments with the real command line."""
    import typer

    from vigil.commands.logs import logs_app

    assert args[:2] == ["vigil", "logs"]
    group = typer.main.get_command(logs_app)
    command = group.commands[args[2]]  # type: ignore[attr-defined]
    context = command.make_context(args[2], list(args[3:]))
    return dict(context.params)


def test_logs_watch_is_off_by_default(rendered: dict[str, list[Manifest]]) -> None:
    names = [m["metadata"]["name"] for m in rendered["defaults"]]
    assert not [name for name in names if name.startswith("vigil-logs-")]


def test_logs_watch_reads_the_stream_the_subscription_fills(
    rendered: dict[str, list[Manifest]],
) -> None:
    manifests = rendered["ci/logs-watch-values.yaml"]
    job = find(manifests, "Job", "vigil-logs-subscribe")
    # The filter is put after every install and upgrade, by a fresh Job each time.
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    subscribe = _parse_vigil_args(pod_spec(job)["containers"][0]["args"])  # type: ignore[index]
    assert subscribe["log_group"] == ["/vigil/app", "/vigil/api"]
    assert subscribe["role_arn"] == "arn:aws:iam::123456789012:role/vigil-ci-cwl-to-kinesis"
    assert subscribe["create_shards"] == 4
    watcher = find(manifests, "Deployment", "vigil-logs-watch")
    container = pod_spec(watcher)["containers"][0]  # type: ignore[index]
    watch = _parse_vigil_args(container["args"])
    # One stream name on both sides.
    assert watch["source"] == f"kinesis://{subscribe['stream']}"
    assert watch["output"] == "jsonl"
    assert watch["state"].startswith("s3://")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert watch["metrics_port"] == ports["metrics"]
    assert watch["metrics_host"] == "0.0.0.0"
    monitor = find(manifests, "ServiceMonitor", "vigil-logs-watch")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    accounts = {
        m["metadata"]["name"]: m["metadata"].get("annotations", {})
        for m in manifests
        if m["kind"] == "ServiceAccount"
    }
    for name, role in (
        ("vigil-logs-watch", "vigil-ci-logs-watch"),
        ("vigil-logs-subscribe", "vigil-ci-logs-subscribe"),
    ):
        assert accounts[name]["eks.amazonaws.com/role-arn"].endswith(role)


def test_logs_watch_env_is_its_settings_and_reaches_the_explainer(
    rendered: dict[str, list[Manifest]],
) -> None:
    """Helm values map one-to-one onto LogWatchSettings fields; the explainer is the chart's,
    called with the one API key."""
    from telemetry.logs.watch.settings import LogWatchSettings

    manifests = rendered["ci/logs-watch-values.yaml"]
    container = pod_spec(find(manifests, "Deployment", "vigil-logs-watch"))["containers"][0]  # type: ignore[index]
    env = {e["name"]: e for e in container["env"]}
    prefix = "VIGIL_LOGS_WATCH_"
    fields = {name.removeprefix(prefix).lower() for name in env if name.startswith(prefix)}
    assert fields <= set(LogWatchSettings.model_fields), fields - set(LogWatchSettings.model_fields)
    values = {
        name.removeprefix(prefix).lower(): e["value"]
        for name, e in env.items()
        if name.startswith(prefix) and "value" in e
    }
    settings = LogWatchSettings.model_validate(values)
    assert settings.window_s == 30
    assert settings.kinesis_max_shards == 2
    explainer = find(manifests, "Service", "vigil-explainer")
    assert settings.explain_url == f"http://vigil-explainer:{explainer['spec']['ports'][0]['port']}"
    key = env["VIGIL_LOGS_WATCH_EXPLAIN_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert key == {"name": "vigil-api-key", "key": SECRET_KEY}
    policies = {m["metadata"]["name"]: m["spec"] for m in manifests if m["kind"] == "NetworkPolicy"}
    (scrape,) = policies["vigil-logs-watch"]["ingress"]
    assert scrape["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    admitted = policies["vigil-logs-watch-to-explainer"]
    assert admitted["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "explainer"
    peer = admitted["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    assert peer["app.kubernetes.io/component"] == "logs-watch"
    assert policies["vigil-logs-subscribe"]["ingress"] == []


def test_logs_subscription_needs_its_log_groups_and_role() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="logGroups"):
        render({"logsWatch": {"enabled": True}})
    with pytest.raises(helm_python.HelmRenderError, match="roleArn"):
        render({"logsWatch": {"enabled": True, "subscription": {"logGroups": ["/vigil/app"]}}})
    without_job = render({"logsWatch": {"enabled": True, "subscription": {"enabled": False}}})
    assert not [m for m in without_job if m["kind"] == "Job"]
    with pytest.raises(helm_python.HelmValuesError, match="initialPosition"):
        render({"logsWatch": {"initialPosition": "EARLIEST"}})
