"""Default ports of every server the platform runs, each defined once.

Every default in the code (settings, ``vigil`` command options) is one of these, and so is
each port of the Helm values (``tests/ops/test_chart.py`` checks they agree) and of the
local Prometheus config, ``monitoring/prometheus/prometheus.yml`` (checked by
``tests/monitoring/test_prometheus_config.py``). The local stack (``vigil demo``) picks free
ports instead, so it can run beside anything else.
"""

# Triton (KServe v2): HTTP, gRPC and its Prometheus metrics (Triton's own defaults).
TRITON_HTTP_PORT = 8000
TRITON_GRPC_PORT = 8001
TRITON_METRICS_PORT = 8002
# The A/B router (nginx in front of Triton): HTTP, and the gRPC pass-through.
ROUTER_HTTP_PORT = 8080
ROUTER_GRPC_PORT = 8081
# The retrain relay (Alertmanager webhook → GitHub repository_dispatch).
RELAY_PORT = 8070
# The local LLM server (llama.cpp's OpenAI-compatible API, the stand-in for vLLM).
LLM_SERVER_PORT = 8090
# The explanation service (POST /explain).
EXPLAINER_PORT = 8100
# The online scorer (/metrics, /feedback, /healthz).
SCORER_PORT = 9108
# MLflow's tracking server (MLflow's own default).
MLFLOW_PORT = 5000
# Prometheus and Alertmanager (their own defaults).
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
