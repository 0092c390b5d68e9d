"""Keep the written report with the training run it describes, as an MLflow artifact."""

from pathlib import Path

from mlflow import MlflowClient

REPORT_ARTIFACT_PATH = "reports"


def log_report(path: Path, tracking_uri: str, run_id: str) -> str:
    """Log ``path`` to the run's artifacts under ``reports/``; returns the artifact's path.

    A finished run takes new artifacts, and a second call replaces the first file.
    """
    MlflowClient(tracking_uri).log_artifact(run_id, str(path), REPORT_ARTIFACT_PATH)
    return f"{REPORT_ARTIFACT_PATH}/{path.name}"
