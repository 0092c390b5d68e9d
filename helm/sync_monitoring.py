"""Copy the monitoring files the chart deploys into ``helm/vigil/files/monitoring/``.

Helm can only read files inside the chart, so the Prometheus rules and Grafana dashboards of
``monitoring/`` (the one source) are copied there; ``--check`` reports drift instead of
copying (the test suite runs the same check).

Run: ``python helm/sync_monitoring.py`` (``make helm-sync``) or ``... --check``.
"""

import argparse
import shutil
import sys
from pathlib import Path

REPO_PATH = Path(__file__).resolve().parents[1]
CHART_FILES = Path("helm/vigil/files")
# (folder under the repository, file pattern) of every monitoring file the chart deploys.
SOURCES = (
    (Path("monitoring/prometheus/rules"), "*.rules.yml"),
    (Path("monitoring/grafana/dashboards"), "*.json"),
)


def planned_copies(repo_path: Path = REPO_PATH) -> dict[Path, Path]:
    """Each chart copy (relative to ``repo_path``) and the monitoring file it copies."""
    copies: dict[Path, Path] = {}
    for folder, pattern in SOURCES:
        sources = sorted((repo_path / folder).glob(pattern))
        if not sources:
            raise FileNotFoundError(f"no {pattern} in {repo_path / folder}")
        for source in sources:
            relative = source.relative_to(repo_path)
            copies[CHART_FILES / relative] = relative
    return copies


def stale_copies(repo_path: Path = REPO_PATH) -> list[Path]:
    """Chart copies (relative to ``repo_path``) whose monitoring file no longer exists."""
    expected = set(planned_copies(repo_path))
    stale = []
    for folder, pattern in SOURCES:
        for copy in sorted((repo_path / CHART_FILES / folder).glob(pattern)):
            relative = copy.relative_to(repo_path)
            if relative not in expected:
                stale.append(relative)
    return stale


def drift(repo_path: Path = REPO_PATH) -> list[str]:
    """What differs between ``monitoring/`` and the chart's copies; empty when in sync."""
    problems = []
    for copy, source in planned_copies(repo_path).items():
        copy_path = repo_path / copy
        if not copy_path.exists():
            problems.append(f"{copy} is missing (copy of {source})")
        elif copy_path.read_bytes() != (repo_path / source).read_bytes():
            problems.append(f"{copy} differs from {source}")
    problems += [f"{copy} has no source in monitoring/" for copy in stale_copies(repo_path)]
    return problems


def sync(repo_path: Path = REPO_PATH) -> list[Path]:
    """Copy every monitoring file into the chart and delete stale copies; returns the copies
    that changed."""
    changed = []
    for copy in stale_copies(repo_path):
        (repo_path / copy).unlink()
        changed.append(copy)
    for copy, source in planned_copies(repo_path).items():
        copy_path, source_path = repo_path / copy, repo_path / source
        if copy_path.exists() and copy_path.read_bytes() == source_path.read_bytes():
            continue
        copy_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_path, copy_path)
        changed.append(copy)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report drift, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = drift()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run `make helm-sync`", file=sys.stderr)
        return 1 if problems else 0
    for copy in sync():
        print(f"updated {copy}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
