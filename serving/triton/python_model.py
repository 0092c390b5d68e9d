"""The Python-backend model the local Triton runs in place of the FIL and ONNX Runtime backends.

``serving.triton.server`` copies this file into each model version of the local launch repository
as ``model.py``; Triton's Python backend stub imports it, so it imports nothing from Vigil.
It loads the repository's own artifact (``xgboost.json`` with XGBoost, ``model.onnx`` with
ONNX Runtime), named by the ``artifact`` parameter of its config, and serves it with the
production config's tensors and batching.

Triton has already checked each request's tensor name, dtype, shape and batch size (a 400
before this code runs, an empty batch included); this model rejects what those checks let
through, non-finite values (the feature contract has no nulls), with INVALID_ARG, which
Triton answers as a 400 (gRPC: INVALID_ARGUMENT).
Requests of one dynamic batch are scored in one call, and a bad request fails alone.
"""

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
from numpy.typing import NDArray

INPUT_TENSOR = "input__0"  # contracts.serving; this file runs outside the vigil package
OUTPUT_TENSOR = "output__0"

Predict = Callable[[NDArray[np.float32]], NDArray[np.float32]]


class TritonPythonModel:
    """Triton Python-backend model: ``initialize`` per instance, ``execute`` per batch."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        artifact = config["parameters"]["artifact"]["string_value"]
        threads = int(config["parameters"]["threads"]["string_value"])
        self._predict = _load(artifact, threads)

    def execute(self, requests: list[Any]) -> list[Any]:
        inputs = [
            pb_utils.get_input_tensor_by_name(request, INPUT_TENSOR).as_numpy()
            for request in requests
        ]
        errors = [_invalid(features) for features in inputs]
        valid = [features for features, error in zip(inputs, errors, strict=True) if not error]
        scores = self._predict(_stack(valid)) if valid else np.empty((0, 1), np.float32)
        responses, start = [], 0
        for features, error in zip(inputs, errors, strict=True):
            if error:
                invalid = pb_utils.TritonError(error, pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(error=invalid))
                continue
            output = pb_utils.Tensor(OUTPUT_TENSOR, scores[start : start + len(features)])
            responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
            start += len(features)
        return responses


def _stack(inputs: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    """One matrix of the batch's rows. A lone request (every large one: the config's
    preferred_batch_size runs it alone) is its shared-memory view as is, never copied."""
    return inputs[0] if len(inputs) == 1 else np.concatenate(inputs)


def _invalid(features: NDArray[np.float32]) -> str | None:
    finite = np.isfinite(features)
    if not finite.all():
        row, column = np.argwhere(~finite)[0]
        return (
            f"{INPUT_TENSOR} holds {int((~finite).sum())} NaN or infinite values (first at "
            f"row {row}, column {column}); features must be finite"
        )
    return None


def _load(artifact: str, threads: int) -> Predict:
    if artifact.endswith(".json"):
        import xgboost as xgb

        booster = xgb.Booster(model_file=artifact)
        booster.set_param({"nthread": threads})

        def predict_xgboost(rows: NDArray[np.float32]) -> NDArray[np.float32]:
            return np.asarray(booster.inplace_predict(rows), np.float32).reshape(-1, 1)

        return predict_xgboost
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])

    def predict_onnx(rows: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(session.run([OUTPUT_TENSOR], {INPUT_TENSOR: rows})[0], np.float32)

    return predict_onnx
