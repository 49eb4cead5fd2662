"""Built-in ONNX model zoo, user models, precision conversion and model cost.

One module per noun, lowest first: `files` (the cache, safe reads and writes), `zoo` (the
built-in graphs), `graph_cost` (FLOPs and bytes), `resolution` (a name or file -> a model for one
batch size), `conversion` (fp16, int8), `audit` (what a file really holds), `catalog` (listing
and exporting the zoo). The names below are the public ones; `from perflab.models import X` is
how the rest of perflab and users reach them.
"""

from perflab.models.audit import audit_onnx_types
from perflab.models.catalog import export, list_models
from perflab.models.conversion import (
    CONVERT_VERSION,
    DEFAULT_CALIBRATION_BATCHES,
    INT8_RECIPES,
    Converted,
    convert,
)
from perflab.models.files import TensorSpec, cache_root, tensor_bytes
from perflab.models.graph_cost import cost
from perflab.models.resolution import REWRITE_VERSION, ModelInfo, random_inputs, resolve
from perflab.models.zoo import BERT_VOCAB, IR_VERSION, OPSET, ZOO, ZOO_VERSION, build_model

__all__ = [
    "BERT_VOCAB",
    "CONVERT_VERSION",
    "DEFAULT_CALIBRATION_BATCHES",
    "INT8_RECIPES",
    "IR_VERSION",
    "OPSET",
    "REWRITE_VERSION",
    "ZOO",
    "ZOO_VERSION",
    "Converted",
    "ModelInfo",
    "TensorSpec",
    "audit_onnx_types",
    "build_model",
    "cache_root",
    "convert",
    "cost",
    "export",
    "list_models",
    "random_inputs",
    "resolve",
    "tensor_bytes",
]
