"""No secret in the repository: detect-secrets (every plugin, default filters) over every file
git tracks. The scanner only reads; a finding fails the test with its file, line and type."""

import random
import string
import subprocess
from pathlib import Path

from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

REPO_PATH = Path(__file__).resolve().parents[2]

# Findings that are not secrets, by file and the flagged value; each says why.
ALLOWED = {
    # Names of Kubernetes Secrets (cert-manager's TLS certificates, the MLflow database URI,
    # Grafana's admin user) and of keys inside them: the chart refers to Secrets by name and
    # never carries their contents. The keyword detector flags any "secret"/"password" key.
    ("helm/vigil/values.yaml", "vigil-inference-tls"),
    ("helm/vigil/values.yaml", "vigil-mlflow-db"),
    ("helm/vigil/values-staging.yaml", "vigil-staging-inference-tls"),
    ("k8s/addons/kube-prometheus-stack-values.yaml", "grafana-admin"),
    ("k8s/addons/kube-prometheus-stack-values.yaml", "admin-password"),
    # The header that carries the API key and the key's name inside the chart's Secret.
    ("contracts/auth.py", "X-API-Key"),
    ("contracts/auth.py", "api-key"),
    # API keys tests configure on their own throwaway services.
    ("tests/rag/test_service.py", "test-key-7c1e9d"),
    ("tests/contracts/test_auth.py", "k-123"),
    ("tests/monitoring/test_alert_routing.py", "relay-key-4d2a"),
    ("tests/vigil/test_relay.py", "relay-key-91b3"),
    ("tests/serving/scorer/test_feedback_auth.py", "not-the-key"),
    # A made-up hex id in an LLM answer the analysis test feeds its checks.
    (
        "tests/telemetry/logs/analysis/test_llm_answers.py",
        "abcdef123456",  # pragma: allowlist secret
    ),
}


def scan(root: Path, files: list[str]) -> set[tuple[str, str, int, str]]:
    """(file, detector, line, flagged value) of every finding in ``files`` (relative to root)."""
    collection = SecretsCollection(root=str(root))
    with default_settings():
        collection.scan_files(*files, num_processors=1)
    return {
        (file, secret.type, secret.line_number or 0, str(secret.secret_value))
        for file, secret in collection
    }


def tracked_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_PATH, capture_output=True, check=True
    ).stdout.decode()
    # A file deleted in the working tree but not yet in the index has nothing to scan.
    return [name for name in listed.split("\0") if name and (REPO_PATH / name).is_file()]


def test_no_tracked_file_holds_a_secret() -> None:
    files = tracked_files()
    assert len(files) > 100, "git ls-files listed almost nothing: wrong folder?"
    findings = scan(REPO_PATH, files)
    unexpected = sorted(f for f in findings if (f[0], f[3]) not in ALLOWED)
    assert not unexpected, "secrets in tracked files (file, detector, line, value):\n" + "\n".join(
        map(str, unexpected)
    )
    stale = ALLOWED - {(file, value) for file, _, _, value in findings}
    assert not stale, f"allow-list entries that no longer match a finding: {sorted(stale)}"


def test_the_scanner_finds_a_planted_aws_key(tmp_path: Path) -> None:
    # Built at run time, so this file holds no key for the scan above to find.
    alphabet = string.ascii_uppercase + string.digits
    key_id = "AKIA" + "".join(random.Random(7).choices(alphabet, k=16))
    (tmp_path / "deploy.env").write_text(f"AWS_ACCESS_KEY_ID={key_id}\nREGION=us-east-1\n")
    findings = scan(tmp_path, ["deploy.env"])
    assert ("deploy.env", "AWS Access Key", 1, key_id) in findings
