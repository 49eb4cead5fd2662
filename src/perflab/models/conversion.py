"""Precision conversion: fp32 ONNX -> fp16 or int8 (static QDQ, else dynamic) files."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perflab.errors import ModelError, Unsupported
from perflab.models.files import _models_dir, _one_line, _safe_stem, _save_model, _write_atomic
from perflab.models.resolution import ModelInfo, random_inputs
from perflab.models.zoo import IR_VERSION
from perflab.precisions import CONVERTIBLE

#: Bumped whenever `convert` changes what it writes.
CONVERT_VERSION = 4


# ---------------------------------------------------------------------------------------------
# Precision conversion
# ---------------------------------------------------------------------------------------------

#: Static (QDQ) int8 recipes by the engine that will run them: (activation type, symmetric
#: activations). Weights are always S8, symmetric, per channel.
#: - "cpu": U8 asymmetric activations. Measured with ORT 1.31 on an AVX512-VNNI CPU (AMD EPYC,
#:   2 threads, resnet18 batch 8, median): fp32 155 ms, U8 activations 46 ms, S8 symmetric
#:   activations 180 ms, because ORT's x86 int8 kernels are built around U8 x S8 products.
#:   OpenVINO runs this form too.
#: - "tensorrt": S8 symmetric activations (zero point 0), the only QDQ form TensorRT's explicit
#:   quantization accepts.
INT8_RECIPES = {"cpu": ("QUInt8", False), "tensorrt": ("QInt8", True)}
#: Calibration batches made from seeded random inputs when the caller gives none.
DEFAULT_CALIBRATION_BATCHES = 4


@dataclass(frozen=True)
class Converted:
    """A model file in a given precision, as `convert` made (or found) it.

    `method` says how: "none" (fp32, the source file), "fp16" (float16 weights and compute,
    fp32 inputs and outputs), "int8-static-qdq" (QuantizeLinear/DequantizeLinear pairs from
    calibration), "int8-dynamic" (weights int8, activations quantized at run time). `notes`
    says why a fallback was taken and what the calibration was. A Converted is os.PathLike,
    so it can be passed where a path is expected.
    """

    path: Path
    precision: str
    method: str
    sha256: str
    notes: tuple[str, ...] = ()

    def __fspath__(self) -> str:
        return os.fspath(self.path)


def _calibration_fingerprint(batches: Sequence[Mapping[str, Any]]) -> str:
    import numpy as np

    h = hashlib.sha256()
    for batch in batches:
        for k in sorted(batch):
            a = np.ascontiguousarray(batch[k])
            h.update(f"{k}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _preprocess_for_quant(src: Path, dst: Path) -> list[str]:
    """ORT's recommended pre-pass (shape inference + graph optimization) before quantizing.

    Symbolic shape inference is skipped: it matters for transformer graphs, which get
    dynamic quantization here anyway; it needs sympy, which perflab does not depend on; and
    when it gives up it writes a file into the current directory.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return []
    except Exception as e:  # noqa: BLE001 - the pre-pass is an optimization, not required
        dst.write_bytes(src.read_bytes())
        return [f"quantization pre-process failed ({_one_line(e)}); quantized the model as is"]


class _Batches:
    """CalibrationDataReader protocol over a list of feed dicts (re-iterable by `rewind`)."""

    def __init__(self, batches: Sequence[Mapping[str, Any]]) -> None:
        self.batches = batches
        self.it = iter(batches)

    def get_next(self) -> dict[str, Any] | None:
        return next(self.it, None)

    def rewind(self) -> None:
        self.it = iter(self.batches)


def _reduce_range(target: str) -> bool:
    """Whether weights are quantized to 7 bits: for the CPU recipe on an x86 CPU without VNNI.

    There ONNX Runtime's U8S8 kernels multiply with VPMADDUBSW, whose 16-bit pair sums saturate
    when large activations meet large weights (255 x 127 x 2 > 32767); onnxruntime's quantization
    guide names reduce_range as the remedy. VNNI (VPDPBUSD) accumulates in 32 bits and needs none.
    """
    import platform

    from perflab.env import cpu_flags

    if target != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    return not {"avx512_vnni", "avx_vnni"} & set(cpu_flags())


def _quantize_static(
    src: Path,
    dst: Path,
    batches: Sequence[Mapping[str, Any]],
    per_channel: bool = True,
    target: str = "cpu",
) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    activation, symmetric = INT8_RECIPES[target]
    reader_cls = type("_Reader", (_Batches, CalibrationDataReader), {})
    quantize_static(
        str(src),
        str(dst),
        reader_cls(batches),
        quant_format=QuantFormat.QDQ,
        per_channel=per_channel,  # per-channel conv/gemm weights: the usual CNN accuracy fix
        activation_type=getattr(QuantType, activation),
        weight_type=QuantType.QInt8,
        reduce_range=_reduce_range(target),
        extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
        calibrate_method=CalibrationMethod.MinMax,
    )


def _try_static(
    src: Path, dst: Path, batches: Sequence[Mapping[str, Any]], target: str
) -> tuple[str, list[str]]:
    """Static QDQ, per-channel first, then per-tensor; returns the method label and notes.

    Per-tensor is the fallback because ORT's per-channel bias-scale fix-up fails on some
    MatMul+Add graphs. Each result must load in ORT: the quantizer can write graphs that do
    not (per-channel DequantizeLinear in an opset below 13).
    """
    notes: list[str] = []
    upgraded = _with_opset_at_least(src, 13, dst.parent / "opset13.onnx")
    if upgraded is None:
        notes.append("could not raise the opset to 13 for per-channel QDQ")
    errors = []
    for per_channel in (True, False):
        source = upgraded if per_channel and upgraded is not None else src
        try:
            _quantize_static(source, dst, batches, per_channel=per_channel, target=target)
            _check_loads(dst)
        except Exception as e:  # noqa: BLE001 - any quantizer failure: try the next way
            errors.append(_one_line(e))
            continue
        activation, symmetric = INT8_RECIPES[target]
        seven_bit = " (7-bit: reduce_range, since U8S8 saturates without VNNI)"
        notes.append(
            f"int8 recipe {target!r}: {activation[1:]} {'symmetric' if symmetric else 'asymmetric'}"
            f" activations, Int8 symmetric {'per-channel' if per_channel else 'per-tensor'} weights"
            + (seven_bit if _reduce_range(target) else "")
        )
        if not per_channel:
            notes.append(f"per-tensor weight scales (per-channel failed: {errors[0]})")
        return "int8-static-qdq", notes
    return "int8-dynamic", [*notes, f"static quantization failed ({errors[-1]}); used dynamic"]


def _with_opset_at_least(src: Path, opset: int, dst: Path) -> Path | None:
    """`src` if its default-domain opset is >= `opset`, else a converted copy (None if the
    version converter cannot)."""
    import onnx

    model = onnx.load(str(src))
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if current >= opset:
        return src
    try:
        converted = onnx.version_converter.convert_version(model, opset)
    except Exception:  # noqa: BLE001 - the converter lacks adapters for some old ops
        return None
    converted.ir_version = max(converted.ir_version, model.ir_version)
    _save_model(converted, dst)
    return dst


def _check_loads(path: Path) -> None:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # load check only
    so.log_severity_level = 3
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _without_initializer_inputs(src: Path, tmp_dir: Path) -> Path:
    """`src`, or a copy whose graph inputs no longer list the initializers.

    IR < 4 files list every initializer as a graph input. The converters then take weights
    for inputs: fp16 with kept I/O types leaves them fp32 behind Casts, and the quantizer's
    opset conversion rejects them.
    """
    import onnx

    model = onnx.load(str(src))
    inits = {i.name for i in model.graph.initializer}
    if not any(vi.name in inits for vi in model.graph.input):
        return src
    kept = [vi for vi in model.graph.input if vi.name not in inits]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    model.ir_version = max(model.ir_version, 4)
    out = tmp_dir / "source.onnx"
    _save_model(model, out)
    return out


def _quantize_dynamic(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def _to_fp16(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    # keep_io_types: callers keep feeding fp32 and reading fp32; the casts sit in the graph.
    m16 = convert_float_to_float16(model, keep_io_types=True)
    m16.ir_version = min(m16.ir_version, max(model.ir_version, IR_VERSION))
    _save_model(m16, dst)


def convert(
    info: ModelInfo,
    precision: str,
    *,
    calibration: Iterable[Mapping[str, Any]] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    method: str | None = None,
    int8_target: str = "cpu",
) -> Converted:
    """Make (or find in the cache) `info`'s model in `precision`: fp32, fp16 or int8.

    fp32 returns the source file. fp16 converts weights and compute to float16 with fp32
    inputs and outputs. int8 quantizes statically to QDQ with MinMax calibration over
    `calibration` (an iterable of input feed dicts; seeded random batches when None), in the
    form `int8_target` runs best (see INT8_RECIPES: "cpu" for ORT CPU and OpenVINO,
    "tensorrt" for TensorRT). Sequence models, and models whose static quantization fails,
    get dynamic quantization instead; `method` forces "static" or "dynamic". The returned
    Converted says which method ran and why. Results are cached by (source sha256,
    precision, method, recipe, calibration fingerprint). Raises Unsupported for precisions
    this module cannot produce (bf16 and "best" are up to the engine).
    """
    if precision not in CONVERTIBLE:
        raise Unsupported(
            f"cannot convert a model to precision {precision!r}; convert makes "
            f"{', '.join(CONVERTIBLE)} (bf16 and best are an engine's own "
            "conversion)"
        )
    if precision == "fp32":
        return Converted(info.path, "fp32", "none", info.sha256)
    if method not in (None, "static", "dynamic"):
        raise ModelError(f"int8 method {method!r} is not one of static, dynamic")
    if int8_target not in INT8_RECIPES:
        raise ModelError(f"int8_target {int8_target!r} is not one of {', '.join(INT8_RECIPES)}")
    notes: list[str] = []
    batches: list[Mapping[str, Any]] = []
    if precision == "fp16":
        chosen = "fp16"
    else:
        chosen = method or ("dynamic" if info.kind == "sequence" else "static")
        if chosen == "static":
            if calibration is None:
                batches = [random_inputs(info, seed=i) for i in range(DEFAULT_CALIBRATION_BATCHES)]
                notes.append(f"calibrated on {len(batches)} batches of seeded random inputs")
            else:
                batches = list(calibration)
                if not batches:
                    raise ModelError("calibration is empty; give at least one input batch")
                notes.append(f"calibrated on {len(batches)} given batches")
        elif info.kind == "sequence" and method is None:
            notes.append(
                "sequence model: dynamic quantization (static QDQ calibration of "
                "attention is unreliable)"
            )
    import onnxruntime as ort

    key = hashlib.sha256(
        json.dumps(
            {
                "source": info.sha256,
                "precision": precision,
                "method": chosen,
                "calibration": _calibration_fingerprint(batches) if batches else None,
                "convert_version": CONVERT_VERSION,
                "onnxruntime": ort.__version__,
                "int8_recipe": INT8_RECIPES[int8_target] if chosen == "static" else None,
                "reduce_range": _reduce_range(int8_target) if chosen == "static" else None,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    d = _models_dir(cache_dir)
    stem = f"{_safe_stem(info.name)}-{info.sha256[:12]}-{precision}-{key[:12]}"
    out, manifest = d / f"{stem}.onnx", d / f"{stem}.json"
    if out.exists() and manifest.exists():
        m = json.loads(manifest.read_text())
        return Converted(out, precision, m["method"], m["sha256"], tuple(m["notes"]))

    with tempfile.TemporaryDirectory(dir=d, prefix=".convert.") as tmp:
        tmp_out = Path(tmp) / "out.onnx"
        src = _without_initializer_inputs(info.path, Path(tmp))
        if precision == "fp16":
            _to_fp16(src, tmp_out)
            label = "fp16"
        else:
            pre = Path(tmp) / "pre.onnx"
            notes += _preprocess_for_quant(src, pre)
            label = "int8-dynamic"
            if chosen == "static":
                label, static_notes = _try_static(pre, tmp_out, batches, int8_target)
                notes += static_notes
            if label == "int8-dynamic":
                try:
                    _quantize_dynamic(pre, tmp_out)
                except Exception as e:  # noqa: BLE001 - the last resort failed: say so
                    raise Unsupported(
                        f"cannot quantize model {info.name!r} to int8: {_one_line(e)}"
                    ) from None
        data = tmp_out.read_bytes()
    _write_atomic(out, data)
    sha = hashlib.sha256(data).hexdigest()
    _write_atomic(
        manifest,
        json.dumps(
            {"method": label, "sha256": sha, "notes": notes, "source": os.fspath(info.path)}
        ).encode(),
    )
    return Converted(out, precision, label, sha, tuple(notes))
