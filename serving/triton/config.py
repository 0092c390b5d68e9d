"""Triton ``config.pbtxt`` files, built as ``ModelConfig`` protobufs and written as text format.

Never assembled by hand: the message is built field by field with tritonclient's
``model_config_pb2`` and serialised by ``text_format``, so a typo is an error here, not a
model that fails to load in production.
"""

from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from contracts.serving import INPUT_TENSOR, OUTPUT_TENSOR

FIL_BACKEND = "fil"
ONNXRUNTIME_BACKEND = "onnxruntime"


@dataclass(frozen=True)
class BatchingOptions:
    """How Triton batches and replicates a model.

    Attributes:
        max_batch_size: the most rows one request (or one dynamic batch) may hold.
        max_queue_delay_microseconds: how long the dynamic batcher waits to fill a batch.
        preferred_batch_size: a pending batch of at least this many rows (capped at
            ``max_batch_size``) is run at once instead of waiting out the delay. Without it
            Triton waits for ``max_batch_size`` rows, so every large request (a 1,024-row
            batch) sat out the whole delay for company it did not need.
        instance_count: model instances per device; requests run on them in parallel.
    """

    max_batch_size: int = 4096
    max_queue_delay_microseconds: int = 100
    preferred_batch_size: int = 256
    instance_count: int = 2

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "preferred_batch_size", "instance_count"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_queue_delay_microseconds < 0:
            raise ValueError("max_queue_delay_microseconds must not be negative")


def model_config(
    name: str,
    backend: str,
    version: int,
    feature_count: int,
    batching: BatchingOptions,
    default_model_filename: str,
    parameters: Mapping[str, str] | None = None,
) -> mc.ModelConfig:
    """The config of one anomaly model: ``input__0`` FP32 [-1, N] -> ``output__0`` FP32 [-1, 1].

    Only ``version`` is served (a specific version policy), so an alias moving back to an
    older version takes effect even though newer version folders remain in the repository.
    """
    if feature_count < 1:
        raise ValueError(f"a model needs at least one feature, got {feature_count}")
    config = mc.ModelConfig(
        name=name,
        backend=backend,
        max_batch_size=batching.max_batch_size,
        default_model_filename=default_model_filename,
        version_policy=mc.ModelVersionPolicy(
            specific=mc.ModelVersionPolicy.Specific(versions=[version])
        ),
        input=[mc.ModelInput(name=INPUT_TENSOR, data_type=mc.TYPE_FP32, dims=[feature_count])],
        output=[mc.ModelOutput(name=OUTPUT_TENSOR, data_type=mc.TYPE_FP32, dims=[1])],
        dynamic_batching=mc.ModelDynamicBatching(
            max_queue_delay_microseconds=batching.max_queue_delay_microseconds,
            preferred_batch_size=[min(batching.preferred_batch_size, batching.max_batch_size)],
        ),
        # KIND_AUTO: on GPU nodes one group per GPU, else CPU.
        instance_group=[
            mc.ModelInstanceGroup(
                kind=mc.ModelInstanceGroup.KIND_AUTO, count=batching.instance_count
            )
        ],
    )
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = value
    return config


def to_pbtxt(config: mc.ModelConfig) -> str:
    """The protobuf text format Triton reads from ``config.pbtxt``."""
    return str(text_format.MessageToString(config))


def parse_pbtxt(text: str) -> mc.ModelConfig:
    """Parse a ``config.pbtxt``; raises ``text_format.ParseError`` naming the bad line."""
    return text_format.Parse(text, mc.ModelConfig())
