"""`import perflab` (and the modules the CLI needs to start) must not load the heavy engines."""

from __future__ import annotations

import subprocess
import sys

HEAVY = (
    "onnxruntime",
    "tensorrt",
    "openvino",
    "torch",
    "cupy",
    "pynvml",
    "MNN",
    "_mnncengine",
    "ncnn",
    "pnnx",
)


def test_import_perflab_leaves_heavy_engines_out():
    code = (
        "import sys, perflab, perflab.cli, perflab.spec, perflab.runner, perflab.store, "
        "perflab.backends, perflab.env, perflab.timing, perflab.models, perflab.pipelines, "
        "perflab.options, perflab.recording, perflab.backends.custom; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
