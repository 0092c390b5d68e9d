# syntax=docker/dockerfile:1
# Vigil rag image: the explanation service (POST /explain), with the all-MiniLM-L6-v2
# embedding model inside (installed as a package, loaded offline).
# BuildKit sends only the paths COPY names, so .venv and data/ never enter the context.
# Build from the repository root: docker build -f docker/rag.Dockerfile -t vigil-rag .
#
# Base pinned by tag (patch level); CI resolves and records its digest at build time.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# torch first from the CPU index: any other resolution pulls a multi-GB CUDA build.
RUN python -m venv /opt/vigil \
    && /opt/vigil/bin/pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY requirements.txt requirements-no-deps.txt pyproject.toml ./
RUN /opt/vigil/bin/pip install -r requirements.txt \
    && /opt/vigil/bin/pip install --no-deps -r requirements-no-deps.txt
COPY contracts/ contracts/
COPY training/ training/
COPY serving/ serving/
COPY rag/ rag/
COPY telemetry/ telemetry/
COPY vigil/ vigil/
RUN /opt/vigil/bin/pip install --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="vigil-rag" \
      org.opencontainers.image.source="https://github.com/vigil-platform/vigil"
RUN groupadd --gid 10001 vigil && useradd --uid 10001 --gid 10001 --no-create-home vigil
COPY --from=builder /opt/vigil /opt/vigil
ENV PATH=/opt/vigil/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 HOME=/tmp \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8100
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8100/healthz', timeout=4)"]
ENTRYPOINT []
CMD ["vigil", "rag", "serve", "--host", "0.0.0.0"]
