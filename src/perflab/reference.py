"""The fp32 reference outputs a run's outputs are checked against: the model on ONNX Runtime's CPU
provider with graph optimizations off, whatever engine the run used.

onnxruntime is imported on first use, so importing this module stays light.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np

CPU_PROVIDER = "CPUExecutionProvider"
#: ONNX Runtime's tensor type names -> numpy dtypes, for the arrays fed to a session.
NUMPY_OF_ORT = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def reference_outputs(
    model_path: str | os.PathLike, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The fp32 reference: the model run on ONNX Runtime's CPU provider with graph optimizations
    off (so no fusion changes the arithmetic) and deterministic kernels."""
    sess = _reference_session(str(model_path))
    feeds = {
        i.name: np.asarray(inputs[i.name], dtype=NUMPY_OF_ORT.get(i.type))
        for i in sess.get_inputs()
    }
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


@lru_cache(maxsize=2)
def _reference_session(path: str) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.use_deterministic_compute = True
    return ort.InferenceSession(path, so, providers=[CPU_PROVIDER])
