"""The serving contract: registered model names, aliases, the tensors Triton exposes, the
artefacts and tags training leaves in MLflow, and the names of the A/B endpoint.

Training registers models under these names and aliases; serving reads them to build the
Triton model repository, and the router and the scorer call the models by these names with
these tensors. Both models take and return the same tensors, so the A/B router can send one
request to either.

Tensor names are fixed by Triton's FIL backend, which accepts no others: one input
``input__0`` (FP32 ``[-1, N]``, the columns of ``contracts.features.feature_columns`` in
order; N and the names are the MLflow signature's) and one output ``output__0`` (FP32
``[-1, 1]``, the anomaly probability).
"""

XGBOOST_MODEL = "xgboost_anomaly"
CATBOOST_MODEL = "catboost_anomaly"
MODEL_NAMES = (XGBOOST_MODEL, CATBOOST_MODEL)

CHAMPION = "champion"
CHALLENGER = "challenger"
ALIASES = (CHAMPION, CHALLENGER)

INPUT_TENSOR = "input__0"
OUTPUT_TENSOR = "output__0"

# Artefacts and tags training logs with each run / model version and serving reads back.
REFERENCE_ARTIFACT = "reference_distributions.json"  # drift reference of the training rows
DETECTOR_ARTIFACT = "detector.npz"  # contracts.detector.FittedDetector
THRESHOLD_TAG = "threshold"  # model version tag: the probability at which it flags a row
SUMMARY_ARTIFACT = "summary.json"  # the run's training summary (training.pipeline.TrainingSummary)

# The summary build_repository writes at the repository root (Triton loads only folders).
REPOSITORY_SUMMARY = "repository.json"

# The A/B endpoint (the router, locally and in the chart): requests name the model AB_MODEL
# (/v2/models/anomaly/...), the router rewrites it to the model of the client's arm and names
# that arm and model in the response headers ARM_HEADER and MODEL_HEADER.
AB_MODEL = "anomaly"
ARM_HEADER = "X-Vigil-Arm"
MODEL_HEADER = "X-Vigil-Model"
# A stable client id to split on (the scorer sends the instance); without it a new client is a
# coin flip. HTTP headers are case-insensitive; gRPC metadata keys must be lowercase.
KEY_HEADER = "X-AB-Key"
# The router's answer to "which arm's model would serve this key": for gRPC clients, whose
# model name is inside the protobuf body, out of nginx's reach.
ASSIGNMENT_PATH = "/ab/assignment"
