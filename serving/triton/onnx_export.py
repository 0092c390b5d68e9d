"""CatBoost's own ONNX export, reshaped to the serving contract.

CatBoost writes ``features`` -> TreeEnsembleClassifier -> (``label``, ``probability_tensor``
[N, 2]) -> ZipMap -> ``probabilities`` (a sequence of {class: probability} maps). Triton's
ONNX Runtime backend serves tensors only, so the ZipMap and the label are dropped, column 1
of the probability tensor (the anomaly class) becomes ``output__0`` [N, 1], and the input is
renamed ``input__0``; the trees themselves are CatBoost's, untouched.
"""

import tempfile
from pathlib import Path

import onnx
from catboost import CatBoostClassifier
from onnx import TensorProto, helper

from contracts.serving import INPUT_TENSOR, OUTPUT_TENSOR

_TREES = "TreeEnsembleClassifier"
_ANOMALY_CLASS = 1
# Gather needs the default opset; 13 pairs with IR version 7 and any ONNX Runtime since 1.6.
_DEFAULT_OPSET = 13
_IR_VERSION = 7


def catboost_to_onnx(model: CatBoostClassifier) -> bytes:
    """The model as a serialised ONNX graph: ``input__0`` FP32 [N, F] -> ``output__0`` [N, 1].

    Raises:
        ValueError: when the export is not a binary tree-ensemble classifier.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        model.save_model(str(path), format="onnx")
        graph_model = onnx.load(str(path))
    return bytes(_to_contract(graph_model).SerializeToString())


def _to_contract(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    trees = [node for node in graph.node if node.op_type == _TREES]
    if len(trees) != 1 or len(graph.input) != 1:
        raise ValueError(
            f"expected one {_TREES} over one input in CatBoost's ONNX export, got nodes "
            f"{[n.op_type for n in graph.node]} and inputs {[i.name for i in graph.input]}"
        )
    classes = next(a for a in trees[0].attribute if a.name == "classlabels_int64s").ints
    if len(classes) != 2:
        raise ValueError(f"the anomaly model must be binary, CatBoost exported classes {classes}")
    probabilities = trees[0].output[1]
    trees[0].input[0] = INPUT_TENSOR
    graph.input[0].name = INPUT_TENSOR
    del graph.node[:]
    graph.node.extend(
        [
            trees[0],
            helper.make_node("Gather", [probabilities, "anomaly_class"], [OUTPUT_TENSOR], axis=1),
        ]
    )
    graph.initializer.append(
        helper.make_tensor("anomaly_class", TensorProto.INT64, [1], [_ANOMALY_CLASS])
    )
    batch = graph.input[0].type.tensor_type.shape.dim[0].dim_param or "N"
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_TENSOR, TensorProto.FLOAT, [batch, 1]))
    if not any(opset.domain in ("", "ai.onnx") for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", _DEFAULT_OPSET))
    model.ir_version = max(model.ir_version, _IR_VERSION)
    onnx.checker.check_model(model, full_check=True)
    return model
