# syntax=docker/dockerfile:1
# Vigil training image: CloudWatch exporter, feature job, retrain (`vigil train` +
# `vigil serving build-repo`), Dask scheduler/workers, MLflow server and the retrain relay.
# BuildKit sends only the paths COPY names, so .venv and data/ never enter the context.
# Build from the repository root: docker build -f docker/training.Dockerfile -t vigil-training .
#
# Base pinned by tag (patch level); CI resolves and records its digest at build time
# (docker buildx imagetools inspect python:3.11.11-slim-bookworm).
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# torch first from the CPU index: any other resolution pulls a multi-GB CUDA build.
RUN python -m venv /opt/vigil \
    && /opt/vigil/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY requirements.txt requirements-no-deps.txt pyproject.toml ./
RUN /opt/vigil/bin/pip install -r requirements.txt \
    && /opt/vigil/bin/pip install --no-deps -r requirements-no-deps.txt \
    # The MLflow server's PostgreSQL driver (the backend store in the cluster).
    && /opt/vigil/bin/pip install psycopg2-binary==2.9.10
COPY contracts/ contracts/
COPY training/ training/
COPY serving/ serving/
COPY rag/ rag/
COPY telemetry/ telemetry/
COPY vigil/ vigil/
RUN /opt/vigil/bin/pip install --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="vigil-training" \
      org.opencontainers.image.source="https://github.com/vigil-platform/vigil"
RUN groupadd --gid 10001 vigil && useradd --uid 10001 --gid 10001 --no-create-home vigil
COPY --from=builder /opt/vigil /opt/vigil
ENV PATH=/opt/vigil/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp
USER 10001:10001
WORKDIR /tmp
# Batch commands exit when done; the healthcheck proves the CLI and its parts import.
HEALTHCHECK --interval=60s --timeout=30s --start-period=10s --retries=3 \
    CMD ["vigil", "--help"]
ENTRYPOINT []
CMD ["vigil", "--help"]
