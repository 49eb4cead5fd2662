"""Workloads: the built-in raw | classify | detect, and a user's own pipeline class.

One interface (`Pipeline`) serves both. Its methods are named after the stages; only `compute` is
required of a pipeline that owns its engine (`backend: custom`), and a pipeline that runs on a
perflab backend supplies `preprocess` / `postprocess` and leaves h2d / compute / d2h to it. A
stage method a pipeline lacks is a stage it does not have: no sample is recorded for it.

A user pipeline is named in the experiment file as `path/to/file.py:ClassName` (relative to the
experiment file) or `package.module:ClassName`; `pipeline_options` are its constructor's keyword
arguments, checked against its signature when the experiment file is read.

The runner times `preprocess` and `postprocess` once per iteration, so everything that is not the
per-iteration work (synthesizing and encoding images, parsing options, allocating the batch array,
building decode grids) happens in `create()` or `make_inputs()`, before timing starts.

Buffer reuse: the image pipelines write every batch into one array allocated at construction, so
`preprocess` returns the same array object on every call and the next call overwrites it. Copy it
if you need to keep it past the next call. `calibration_batches` always returns fresh arrays.

`DetectPipeline.postprocess` maps boxes back to original-image pixels with the letterbox geometry
recorded by the most recent `preprocess` call (before any call it assumes identity geometry, i.e.
boxes stay in model-input pixels).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from perflab.errors import SpecError, Unsupported
from perflab.models import TensorSpec
from perflab.options import Option, check_keys
from perflab.stages import ITERATION_STAGES

__all__ = [
    "PIPELINES",
    "STAGE_METHODS",
    "ClassifyPipeline",
    "DetectPipeline",
    "Pipeline",
    "RawPipeline",
    "create",
    "declared_options",
    "letterbox_geometry",
    "load_class",
    "nms",
    "softmax",
    "synthetic_images",
    "top_k",
]

PIPELINES = ("raw", "classify", "detect")
#: Pipeline methods the harness times, in stage order; `sync` is the barrier it calls after
#: h2d / compute / d2h, before it reads the clock.
STAGE_METHODS = ITERATION_STAGES
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# JPEG and PNG files start with these bytes whatever their suffix says.
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")

# ImageNet statistics in RGB order, on the 0..1 scale (torchvision's convention).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Single-channel models get the channel average of the ImageNet statistics, the usual choice when
# an ImageNet-style recipe is applied to grayscale input; override with options `mean`/`std`.
GRAY_MEAN = (0.449,)
GRAY_STD = (0.226,)

# The usual evaluation crop ratio: resize the shorter side to 256 for a 224 crop.
CROP_RATIO = 224 / 256
LETTERBOX_FILL = 114  # YOLO's gray padding value
DEFAULT_VOCAB_SIZE = 1000  # small enough to be a valid token id for any real vocabulary
DEFAULT_IMAGE_SIZE = (640, 480)  # (width, height) of a VGA camera frame

# Seed-sequence streams, so the timed inputs and the calibration inputs never share random draws.
_STREAM_TIMED = 0
_STREAM_CALIBRATION = 1

_FLOAT_DTYPES = ("float16", "float32", "float64")


class Pipeline(Protocol):
    """A workload, stage by stage. Only `compute` is required, and only of a pipeline that owns
    its engine (`backend: custom`); every other method is optional, and a missing stage method is
    a stage the pipeline does not have.

    Untimed: `setup()` (load a model, create a session or engine, allocate), `make_inputs()` (the
    raw input handed to `preprocess` every iteration; None when absent), `teardown()`, and
    `calibration_batches(n)` (int8 calibration on a perflab backend), `facts()` (a dict of `runs`
    columns read after the run, such as `detections_per_iteration`).
    Timed, in this order: `preprocess(raw)`, `h2d(x)`, `compute(x)`, `d2h(y)`,
    `postprocess(y)`; each takes the previous stage's result. After each of h2d / compute / d2h
    the harness calls `sync()` (when the pipeline has it) before it reads the clock.
    """

    def compute(self, inputs: Any) -> Any:
        """Model inputs -> model outputs (the `compute` stage)."""
        ...


def is_target(name: str) -> bool:
    """True for a user pipeline target ("file.py:Class", "pkg.mod:Class"), False for a built-in."""
    return ":" in name


def load_class(target: str, base: Path | None = None) -> type:
    """The class a target names; SpecError naming the missing file, module or attribute.

    A file path is read relative to `base` (the experiment file's folder). Importing a file twice
    gives the same module (keyed by its resolved path), so the parent's check and the worker's
    run see the same code.
    """
    where, _, attr = target.rpartition(":")
    if not where or not attr:
        raise SpecError(f"pipeline {target!r}: expected FILE.py:CLASS or MODULE:CLASS")
    if where.endswith(".py") or "/" in where:
        path = Path(where)
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.is_file():
            raise SpecError(f"pipeline {target!r}: file {path} does not exist")
        path = path.resolve()
        name = f"perflab_pipeline_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001 - any failure of user code is a one-line error
                del sys.modules[name]
                raise SpecError(
                    f"pipeline {target!r}: importing {path} failed: {type(exc).__name__}: {exc}"
                ) from None
        what = f"file {path}"
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as exc:
            if exc.name and where.startswith(exc.name):
                raise SpecError(f"pipeline {target!r}: module {where!r} not found") from None
            raise SpecError(f"pipeline {target!r}: importing {where} failed: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any failure of user code is a one-line error
            raise SpecError(
                f"pipeline {target!r}: importing {where} failed: {type(exc).__name__}: {exc}"
            ) from None
        what = f"module {where!r}"
    cls = getattr(module, attr, None)
    if cls is None:
        raise SpecError(f"pipeline {target!r}: {what} has no attribute {attr!r}")
    if not inspect.isclass(cls):
        raise SpecError(f"pipeline {target!r}: {attr!r} in {what} is not a class")
    return cls


def stage_methods(pipeline: Any) -> dict[str, Any]:
    """The pipeline's bound stage methods by stage name (None for a stage it does not have)."""
    return {s: getattr(pipeline, s, None) for s in STAGE_METHODS}


def check(name: str, options: Mapping[str, Any], *, owns_engine: bool, base: Path | None) -> None:
    """Everything about a pipeline that the experiment file alone decides, checked when it is read.

    `owns_engine`: the config runs on `backend: custom`, so the pipeline must have `compute`;
    on a perflab backend it must not (the backend computes).
    """
    if not is_target(name):
        if name not in PIPELINES:
            raise SpecError(
                f"unknown pipeline {name!r}; choose one of: {', '.join(PIPELINES)}, "
                "or FILE.py:CLASS / MODULE:CLASS for your own"
            )
        if owns_engine:
            raise SpecError(
                f"backend 'custom' runs a pipeline that owns its engine (FILE.py:CLASS); "
                f"the built-in {name!r} runs on a perflab backend"
            )
        check_keys(f"pipeline {name!r}", options, _BUILTIN[name].options)
        _check_image_sources(name, options)
        return
    cls = load_class(name, base)
    has_compute = callable(getattr(cls, "compute", None))
    if owns_engine and not has_compute:
        raise SpecError(
            f"pipeline {name!r}: class {cls.__name__} has no compute(inputs) method, "
            "which backend 'custom' calls"
        )
    if not owns_engine and has_compute:
        raise SpecError(
            f"pipeline {name!r}: class {cls.__name__} has its own compute; run it with "
            "backend: custom, or drop compute to let the backend compute"
        )
    check_constructor(name, cls, options)


def check_constructor(name: str, cls: type, options: Mapping[str, Any]) -> None:
    """SpecError when `pipeline_options` do not fit the class's constructor."""
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return  # a constructor without a readable signature is checked when it is called
    try:
        signature.bind(**options)
    except TypeError as exc:
        params = [
            p.name
            for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        raise SpecError(
            f"pipeline {name!r}: pipeline_options do not fit {cls.__name__}(): {exc}; "
            f"its options: {', '.join(params) or '(none)'}"
        ) from None


def declared_options(name: str) -> tuple[Option, ...]:
    """The declared options of a built-in pipeline (what `perflab pipelines` lists)."""
    return _BUILTIN[name].options


def description(name: str) -> str:
    """The first line of a built-in pipeline's docstring."""
    return (_BUILTIN[name].__doc__ or "").strip().splitlines()[0]


def create(
    name: str,
    inputs: Sequence[TensorSpec],
    *,
    batch_size: int,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Build the pipeline `name` for a model with these (batch-resolved) inputs.

    A user target ("file.py:Class") is built as Class(**options); the built-ins get the model's
    inputs too. Raises SpecError for an unknown name or a bad option, Unsupported when the model's
    inputs do not fit the pipeline (for example `classify` on a text model).
    """
    if is_target(name):
        return load_class(name)(**dict(options or {}))
    if name not in PIPELINES:
        raise SpecError(f"unknown pipeline {name!r}; choose one of: {', '.join(PIPELINES)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise SpecError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SpecError(f"seed must be a non-negative integer, got {seed!r}")
    inputs = tuple(inputs)
    if not inputs:
        raise Unsupported(f"pipeline {name!r} needs a model with at least one input; it has none")
    return _BUILTIN[name](inputs, batch_size=batch_size, seed=seed, options=dict(options or {}))


# --------------------------------------------------------------------------------------------
# Options: each pipeline declares its keys; unknown keys are rejected so a typo cannot silently
# leave a default in place.


class _Options:
    def __init__(self, pipeline: str, given: Mapping[str, Any], known: Sequence[Option]) -> None:
        check_keys(f"pipeline {pipeline!r}", given, known)
        self.pipeline = pipeline
        self.given = given

    def _bad(self, key: str, value: Any, expected: str) -> SpecError:
        return SpecError(f"pipeline {self.pipeline!r} option {key}={value!r}: expected {expected}")

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.given.get(key, default)
        if value not in choices:
            raise self._bad(key, value, "one of " + ", ".join(choices))
        return value

    def integer(self, key: str, default: int, lo: int, hi: int | None = None) -> int:
        value = self.given.get(key, default)
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if not ok or value < lo or (hi is not None and value > hi):
            span = f">= {lo}" if hi is None else f"{lo}..{hi}"
            raise self._bad(key, value, f"an integer {span}")
        return int(value)

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.given.get(key, default)
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, bool
        )
        if not ok or not (lo <= float(value) <= hi):
            raise self._bad(key, value, f"a number in [{lo}, {hi}]")
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.given.get(key, default)
        if not isinstance(value, (bool, np.bool_)):
            raise self._bad(key, value, "true or false")
        return bool(value)

    def string(self, key: str, default: str | None) -> str | None:
        value = self.given.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self._bad(key, value, "a tensor name")
        return value

    def floats(self, key: str, default: Sequence[float], length: int) -> tuple[float, ...]:
        value = self.given.get(key, default)
        try:
            values = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise self._bad(key, value, f"a list of {length} numbers") from None
        if len(values) != length or not all(math.isfinite(v) for v in values):
            raise self._bad(key, value, f"a list of {length} finite numbers")
        return values

    def image_size(self) -> tuple[int, int]:
        """`image_size` as (width, height), from "1280x720" or [1280, 720]."""
        value = self.given.get("image_size", DEFAULT_IMAGE_SIZE)
        parsed: tuple[Any, ...] | None = None
        if isinstance(value, str):
            parts = value.lower().split("x")
            if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
                parsed = (int(parts[0]), int(parts[1]))
        elif isinstance(value, Sequence) and len(value) == 2:
            parsed = tuple(value)
        if parsed is None or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 16 <= v <= 8192
            for v in parsed
        ):
            raise self._bad(
                "image_size", value, 'WIDTHxHEIGHT such as "640x480" or "1280x720" (16..8192 each)'
            )
        return int(parsed[0]), int(parsed[1])


# --------------------------------------------------------------------------------------------
# Small numeric building blocks (public so that tests and notebooks can check them directly).


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax: subtracting the row maximum keeps exp() from overflowing."""
    x = np.asarray(logits, dtype=np.float32)
    shifted = x - x.max(axis=axis, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=axis, keepdims=True)
    return shifted


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k largest entries of each row, largest first.

    argpartition finds the k winners in O(C) per row; only those k are then sorted.
    """
    scores = np.asarray(scores)
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(k), (scores.shape[0], k))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_scores, order, axis=1)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_ids: np.ndarray | None = None,
    max_output: int = 0,
) -> np.ndarray:
    """Greedy non-maximum suppression over xyxy boxes; kept indices, best score first.

    A box is suppressed when its IoU with a kept, higher-scoring box exceeds `iou_threshold`
    (equal scores: the lower index wins). With `class_ids`, only boxes of the same class suppress
    each other. `max_output` > 0 stops after that many boxes. Boxes scoring <= 0 are dropped.

    The greedy loop runs in OpenCV's C++ (cv2.dnn.NMSBoxes), about 3x faster than a loop of
    vectorized numpy rounds at a few hundred kept boxes.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.intp)
    # Shift every box into x, y >= 0, then move each class to its own disjoint range (torchvision's
    # batched_nms trick); OpenCV's batched variant offsets by the maximum coordinate only, which
    # lets classes overlap when boxes have negative coordinates.
    lo = float(boxes.min())
    xywh = np.empty_like(boxes)
    xywh[:, :2] = boxes[:, :2] - lo
    xywh[:, 2:] = np.maximum(boxes[:, 2:] - boxes[:, :2], 0)  # inverted boxes have no area
    if class_ids is not None:
        span = float(boxes.max()) - lo + 1
        xywh[:, :2] += np.asarray(class_ids, dtype=np.float32).reshape(-1, 1) * np.float32(span)
    # OpenCV's own top_k truncates the candidates *before* suppression, so the cap on kept boxes
    # is applied here instead.
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh, scores, 0.0, iou_threshold), dtype=np.intp)
    keep = keep.reshape(-1)
    return keep[:max_output] if max_output > 0 else keep


def letterbox_geometry(
    image_hw: tuple[int, int], target_hw: tuple[int, int], pad_position: str = "center"
) -> tuple[float, int, int, int, int]:
    """(scale, pad_left, pad_top, resized_w, resized_h) for fitting an image into target_hw.

    The scale keeps the aspect ratio; the rest of the target is padding. `pad_position` "center"
    splits it (YOLOv5/v8), "top_left" puts the image in the corner (YOLOX).
    """
    h, w = image_hw
    th, tw = target_hw
    scale = min(th / h, tw / w)
    new_w = min(tw, max(1, round(w * scale)))
    new_h = min(th, max(1, round(h * scale)))
    if pad_position == "center":
        return scale, (tw - new_w) // 2, (th - new_h) // 2, new_w, new_h
    return scale, 0, 0, new_w, new_h


# --------------------------------------------------------------------------------------------
# Synthetic camera frames: the project generates its own images, so there is no dataset to ship.


def _synthetic_scene(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A BGR uint8 frame with a colour gradient, filled shapes, lines, text and sensor noise.

    Flat synthetic images compress and decode unrealistically fast; the edges, texture and noise
    here give JPEG/PNG a realistic amount of entropy to encode, so decoding is real work.
    """
    c0, c1 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None] * np.float32(np.sin(angle))
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :] * np.float32(np.cos(angle))
    t = xs + ys
    t -= t.min()
    t /= max(float(t.max()), 1e-6)
    img = (c0 + t[..., None] * (c1 - c0)).astype(np.uint8)

    size = min(width, height)
    for _ in range(int(rng.integers(8, 20))):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        kind = int(rng.integers(0, 5))
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        extent = int(rng.integers(size // 20, size // 3))
        if kind == 0:
            cv2.rectangle(img, (cx, cy), (cx + extent, cy + extent * 2 // 3), colour, -1)
        elif kind == 1:
            cv2.circle(img, (cx, cy), extent // 2, colour, -1, cv2.LINE_AA)
        elif kind == 2:
            axes = (extent // 2, max(1, extent // 4))
            angle_deg = float(rng.uniform(0, 180))
            cv2.ellipse(img, (cx, cy), axes, angle_deg, 0, 360, colour, -1, cv2.LINE_AA)
        elif kind == 3:
            points = rng.integers(-extent, extent, size=(int(rng.integers(3, 7)), 2)) + (cx, cy)
            cv2.fillPoly(img, [points.astype(np.int32)], colour, cv2.LINE_AA)
        else:
            end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(img, (cx, cy), end, colour, int(rng.integers(1, 6)), cv2.LINE_AA)
    text_scale = size / 400
    cv2.putText(
        img,
        "perflab",
        (width // 10, height // 2),
        cv2.FONT_HERSHEY_SIMPLEX,
        text_scale,
        (255, 255, 255),
        max(1, size // 200),
        cv2.LINE_AA,
    )

    img = cv2.GaussianBlur(img, (3, 3), 0)  # optics: no real camera has perfectly sharp edges
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(4.0)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def synthetic_images(
    count: int,
    *,
    width: int = DEFAULT_IMAGE_SIZE[0],
    height: int = DEFAULT_IMAGE_SIZE[1],
    image_format: str = "jpeg",
    jpeg_quality: int = 90,
    seed: int | Sequence[int] = 0,
) -> list[bytes]:
    """`count` encoded synthetic frames; "mixed" alternates JPEG (even) and PNG (odd).

    Every image has its own seed-sequence child, so image i is the same whatever `count` is.
    """
    formats = ("jpeg", "png", "mixed")
    if image_format not in formats:
        raise SpecError(f"image_format {image_format!r}: expected one of {', '.join(formats)}")
    children = np.random.SeedSequence(seed).spawn(count)
    encoded = []
    for i, child in enumerate(children):
        img = _synthetic_scene(np.random.default_rng(child), width, height)
        use_png = image_format == "png" or (image_format == "mixed" and i % 2 == 1)
        if use_png:
            ok, buf = cv2.imencode(".png", img)
        else:
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:  # pragma: no cover - OpenCV built without the codec
            raise Unsupported(f"this OpenCV build cannot encode {'PNG' if use_png else 'JPEG'}")
        encoded.append(buf.tobytes())
    return encoded


def _decode(data: bytes | np.ndarray, flags: int, index: int) -> np.ndarray:
    if isinstance(data, np.ndarray):  # a video frame, decoded when the clip was read
        if flags == cv2.IMREAD_GRAYSCALE and data.ndim == 3:
            return cv2.cvtColor(data, cv2.COLOR_BGR2GRAY)
        return data
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if img is None:
        raise ValueError(f"image {index} of the batch ({len(data)} bytes) could not be decoded")
    return img


# --------------------------------------------------------------------------------------------
# raw


class _BuiltinPipeline:
    """The constructor of the built-in pipelines: the one every pipeline has, with the options
    checked against the class's declared `options`, then handed to `_configure`."""

    name: str
    options: tuple[Option, ...]

    def __init__(
        self,
        inputs: Sequence[TensorSpec],
        *,
        batch_size: int,
        seed: int,
        options: Mapping[str, Any],
    ) -> None:
        self.batch_size = batch_size
        self.seed = seed
        self._configure(inputs, _Options(self.name, options, self.options))

    def _configure(self, inputs: Sequence[TensorSpec], opts: _Options) -> None:
        """Check the inputs and read the options (Unsupported or SpecError when they do not fit)."""
        raise NotImplementedError


class RawPipeline(_BuiltinPipeline):
    """Seeded random tensors for every model input; pre- and postprocess are identity.

    This gives trtexec-style pure engine numbers for any model: float inputs ~ N(0, 1); integer
    inputs are token ids in [0, vocab_size), except names containing "mask" (ones), "token_type" or
    "segment" (zeros, the only id every BERT-style type vocabulary has) and "position" (0..L-1).

    Options: vocab_size (int, default 1000).
    """

    name = "raw"
    options = (
        Option(
            "vocab_size", "int >= 1", DEFAULT_VOCAB_SIZE, "token ids of integer inputs are < this"
        ),
    )

    def _configure(self, inputs: Sequence[TensorSpec], opts: _Options) -> None:
        self.vocab_size = opts.integer("vocab_size", DEFAULT_VOCAB_SIZE, 1)
        self.inputs = tuple(inputs)
        for spec in self.inputs:
            self._check(spec)

    def _check(self, spec: TensorSpec) -> None:
        what = f"input {spec.name!r} ({spec.dtype} {list(spec.shape)})"
        try:
            kind = np.dtype(spec.dtype).kind
        except TypeError:
            kind = "?"
        if kind not in "fiub":
            raise Unsupported(
                f"pipeline 'raw' cannot make data for {what}; "
                "supported dtypes: float16/32/64, (u)int8..64, bool"
            )
        if any(int(d) < 0 for d in spec.shape):
            raise Unsupported(f"pipeline 'raw' needs resolved shapes; {what}")

    def _tensor(self, spec: TensorSpec, rng: np.random.Generator) -> np.ndarray:
        dtype = np.dtype(spec.dtype)
        shape = tuple(int(d) for d in spec.shape)
        lname = spec.name.lower()
        if dtype.kind == "f":
            return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)
        if "mask" in lname:
            return np.ones(shape, dtype=dtype)
        if dtype.kind == "b":
            return rng.integers(0, 2, size=shape).astype(bool)
        if "token_type" in lname or "segment" in lname:
            return np.zeros(shape, dtype=dtype)
        if "position" in lname and shape:
            return np.broadcast_to(np.arange(shape[-1], dtype=dtype), shape).copy()
        info = np.iinfo(dtype)
        high = min(self.vocab_size, int(info.max) + 1)
        return rng.integers(max(0, int(info.min)), high, size=shape, dtype=dtype)

    def _batch(self, seed: Sequence[int]) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(np.random.SeedSequence(seed))
        return {spec.name: self._tensor(spec, rng) for spec in self.inputs}

    def make_inputs(self) -> dict[str, np.ndarray]:
        return self._batch((self.seed, _STREAM_TIMED))

    def preprocess(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return raw

    def postprocess(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return outputs

    def calibration_batches(self, n: int) -> list[dict[str, np.ndarray]]:
        return [self._batch((self.seed, _STREAM_CALIBRATION, i)) for i in range(n)]


# --------------------------------------------------------------------------------------------
# Shared by the image pipelines


IMAGE_OPTIONS = (
    Option("images", "folder", None,
           "JPEG / PNG files read once as encoded bytes, decoded in preprocess, cycled; "
           "default: synthetic frames"),
    Option("video", "file", None,
           "a clip read with OpenCV (frames decoded when read, so preprocess has no decode)"),
    Option("image_size", "WIDTHxHEIGHT", "640x480", "size of the synthetic frames"),
    Option("image_format", "jpeg | png | mixed", "jpeg", "encoding of the synthetic frames"),
    Option("jpeg_quality", "int 1..100", 90, "JPEG quality of the synthetic frames"),
    Option("channel_order", "rgb | bgr", "rgb", "channel order the model expects (YOLOX: bgr)"),
    Option("output", "tensor name", None, "model output to postprocess; default: the first"),
)  # fmt: skip
MAX_VIDEO_FRAMES = 300  # frames kept from a clip: enough to cycle, bounded in memory


def _image_files(folder: Path) -> list[Path]:
    """The JPEG / PNG files of a folder, sorted; SpecError naming what is wrong."""
    if not folder.is_dir():
        raise SpecError(f"pipeline option images: {folder} is not a folder")
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise SpecError(f"pipeline option images: cannot read {folder}: {exc.strerror}") from None
    if not entries:
        raise SpecError(f"pipeline option images: {folder} holds no files")
    for path in entries:
        if not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
            raise SpecError(
                f"pipeline option images: {path} is not a JPEG or PNG file "
                f"({', '.join(IMAGE_SUFFIXES)})"
            )
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except OSError as exc:
            raise SpecError(f"pipeline option images: cannot read {path}: {exc.strerror}") from None
        if not head.startswith(_IMAGE_MAGIC):
            raise SpecError(f"pipeline option images: {path} is not a JPEG or PNG image")
    return entries


def _video_frames(path: Path, limit: int = MAX_VIDEO_FRAMES) -> list[np.ndarray]:
    if not path.is_file():
        raise SpecError(f"pipeline option video: {path} does not exist")
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while len(frames) < limit:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise SpecError(f"pipeline option video: OpenCV read no frames from {path}")
    return frames


def _check_image_sources(name: str, options: Mapping[str, Any]) -> None:
    """The images folder / video file of a built-in image pipeline, checked before any run."""
    if "images" in options and "video" in options:
        raise SpecError(f"pipeline {name!r}: give images or video, not both")
    if options.get("images") is not None:
        _image_files(Path(str(options["images"])))
    if options.get("video") is not None:
        _video_frames(Path(str(options["video"])), limit=1)


def _image_input(
    pipeline: str, inputs: Sequence[TensorSpec], batch_size: int
) -> tuple[TensorSpec, int, int, int]:
    """The single NCHW float image input, as (spec, C, H, W); Unsupported for anything else."""
    need = f"pipeline {pipeline!r} needs one NCHW image input with 1 or 3 channels"
    if len(inputs) != 1:
        listed = ", ".join(f"{s.name!r} {s.dtype} {list(s.shape)}" for s in inputs)
        raise Unsupported(f"{need}; model has {len(inputs)} inputs: {listed}")
    spec = inputs[0]
    got = f"model input {spec.name!r} is {spec.dtype} {list(spec.shape)}"
    if str(spec.dtype) not in _FLOAT_DTYPES or len(spec.shape) != 4 or spec.shape[1] not in (1, 3):
        raise Unsupported(f"{need}; {got}")
    n, c, h, w = (int(d) for d in spec.shape)
    if h < 1 or w < 1:
        raise Unsupported(f"pipeline {pipeline!r} needs a resolved image size; {got}")
    if n != batch_size:
        raise Unsupported(f"pipeline {pipeline!r} runs batch_size {batch_size}, but {got}")
    return spec, c, h, w


def _select_output(
    pipeline: str, outputs: Mapping[str, np.ndarray], name: str | None
) -> np.ndarray:
    if name is None:
        if not outputs:
            raise Unsupported(f"pipeline {pipeline!r} got no model outputs to postprocess")
        return np.asarray(next(iter(outputs.values())))
    if name not in outputs:
        raise Unsupported(
            f"pipeline {pipeline!r} option output={name!r} is not a model output; "
            f"outputs: {', '.join(outputs)}"
        )
    return np.asarray(outputs[name])


class _ImagePipeline(_BuiltinPipeline):
    """Common parts: synthetic encoded frames as raw input, one reusable batch array."""

    def _configure(self, inputs: Sequence[TensorSpec], opts: _Options) -> None:
        """The image input and the options of every image pipeline; a subclass reads its own
        after these (calling this first)."""
        self.spec, self.channels, self.height, self.width = _image_input(
            self.name, inputs, self.batch_size
        )
        self.image_width, self.image_height = opts.image_size()
        self.image_format = opts.choice("image_format", ("jpeg", "png", "mixed"), "jpeg")
        self.jpeg_quality = opts.integer("jpeg_quality", 90, 1, 100)
        self.channel_order = opts.choice("channel_order", ("rgb", "bgr"), "rgb")
        self.output_name = opts.string("output", None)
        images, video = opts.given.get("images"), opts.given.get("video")
        # Real inputs are read once here, untimed: encoded bytes for images (decoded in the timed
        # preprocess, as the synthetic frames are), decoded frames for a video clip.
        self._real: list[bytes] | list[np.ndarray] | None = None
        if images is not None:
            self._real = [p.read_bytes() for p in _image_files(Path(str(images)))]
        elif video is not None:
            self._real = _video_frames(Path(str(video)))
        self._cursor = 0
        self._decode_flags = cv2.IMREAD_GRAYSCALE if self.channels == 1 else cv2.IMREAD_COLOR
        # Model channel c reads decoded (BGR) channel _channel_src[c]; fixed at construction.
        flip = self.channels == 3 and self.channel_order == "rgb"
        self._channel_src = [2, 1, 0] if flip else list(range(self.channels))
        self._batch = self._new_batch()

    def _write_planes(
        self, image: np.ndarray, dst: np.ndarray, scale: Any, bias: Any = None
    ) -> None:
        """dst[c] = image's channel _channel_src[c] * scale[c] (- bias[c]): an HWC uint8 image
        as the model's CHW input. Contiguous uint8 planes first: casting and scaling whole
        planes is about twice as fast as reading one channel at a time out of the interleaved
        HWC image."""
        planes = cv2.split(image) if image.ndim == 3 else (image,)
        for c, src in enumerate(self._channel_src):
            plane = dst[c]
            plane[...] = planes[src]
            plane *= scale[c]
            if bias is not None:
                plane -= bias[c]

    def _new_batch(self) -> np.ndarray:
        return np.empty(
            (self.batch_size, self.channels, self.height, self.width), dtype=self.spec.dtype
        )

    def _images(self, seed: Sequence[int]) -> list[bytes]:
        return synthetic_images(
            self.batch_size,
            width=self.image_width,
            height=self.image_height,
            image_format=self.image_format,
            jpeg_quality=self.jpeg_quality,
            seed=seed,
        )

    def _next_batch(self, raw: Sequence[Any]) -> Sequence[Any]:
        """The next batch_size images of `raw`, cycling (all of it when it is one batch)."""
        n, b = len(raw), self.batch_size
        if n == b:
            return raw
        if n == 0:
            raise ValueError("no images to preprocess")
        i = self._cursor
        self._cursor = (i + b) % n
        return [raw[(i + k) % n] for k in range(b)]

    def make_inputs(self) -> Sequence[Any]:
        if self._real is not None:
            return self._real
        return self._images((self.seed, _STREAM_TIMED))

    def _calibration_images(self, b: int) -> Sequence[Any]:
        if self._real is not None:
            n = len(self._real)
            return [self._real[(b * self.batch_size + k) % n] for k in range(self.batch_size)]
        return self._images((self.seed, _STREAM_CALIBRATION, b))


# --------------------------------------------------------------------------------------------
# classify


class ClassifyPipeline(_ImagePipeline):
    """Decode, resize + center-crop (or direct resize), ImageNet-normalize, NCHW; softmax + top-k.

    Options:
      image_size      source frame size, "640x480" (default) or "1280x720" or [W, H]
      image_format    jpeg (default) | png | mixed
      jpeg_quality    1..100, default 90
      resize          center_crop (default: shorter side to resize_size, then crop H x W) | direct
      resize_size     shorter side before the crop; default round(max(H, W) * 256 / 224)
      mean, std       per-channel, 0..1 scale, model channel order; default ImageNet
      channel_order   rgb (default) | bgr: the order the model expects
      top_k           default 5
      softmax         true (default): outputs are logits; false: outputs are already scores
      output          which model output holds the scores (default: the first)
    """

    name = "classify"
    options = IMAGE_OPTIONS + (
        Option("resize", "center_crop | direct", "center_crop",
               "center_crop: shorter side to resize_size, then crop; direct: resize to H x W"),
        Option("resize_size", "int", None, "shorter side before the crop; default H x 256 / 224"),
        Option("mean", "list of numbers", None, "per-channel mean, 0..1 scale; default ImageNet"),
        Option("std", "list of numbers", None, "per-channel std, 0..1 scale; default ImageNet"),
        Option("top_k", "int >= 1", 5, "classes kept per image"),
        Option("softmax", "bool", True, "true: outputs are logits; false: already scores"),
    )  # fmt: skip

    def _configure(self, inputs: Sequence[TensorSpec], opts: _Options) -> None:
        super()._configure(inputs, opts)
        self.resize = opts.choice("resize", ("center_crop", "direct"), "center_crop")
        default_short = round(max(self.height, self.width) / CROP_RATIO)
        self.resize_size = opts.integer("resize_size", default_short, max(self.height, self.width))
        gray = self.channels == 1
        mean = opts.floats("mean", GRAY_MEAN if gray else IMAGENET_MEAN, self.channels)
        std = opts.floats("std", GRAY_STD if gray else IMAGENET_STD, self.channels)
        if any(s <= 0 for s in std):
            raise opts._bad("std", std, "positive numbers")
        self.mean, self.std = mean, std
        self.top_k = opts.integer("top_k", 5, 1)
        self.apply_softmax = opts.boolean("softmax", True)
        # (x / 255 - mean) / std folded into one multiply-add per pixel: x * scale - bias.
        self._scale = np.array([1 / (255 * s) for s in std], dtype=np.float32)
        self._bias = np.array([m / s for m, s in zip(mean, std)], dtype=np.float32)

    def _resize_crop(self, img: np.ndarray) -> np.ndarray:
        """uint8 HWC (or HW) image -> H x W view, still uint8 so the resize moves bytes, not floats."""
        if self.resize == "direct":
            return cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        h, w = img.shape[:2]
        scale = self.resize_size / min(h, w)
        # The shorter side lands exactly on resize_size (rounding the product could miss by one).
        new_w = self.resize_size if w <= h else max(self.width, round(w * scale))
        new_h = self.resize_size if h < w else max(self.height, round(h * scale))
        resized = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        top = (new_h - self.height) // 2
        left = (new_w - self.width) // 2
        return resized[top : top + self.height, left : left + self.width]

    def _fill(self, raw: Sequence[bytes], out: np.ndarray) -> None:
        for i, data in enumerate(raw):
            crop = self._resize_crop(_decode(data, self._decode_flags, i))
            self._write_planes(crop, out[i], self._scale, self._bias)

    def preprocess(self, raw: Sequence[bytes]) -> dict[str, np.ndarray]:
        self._fill(self._next_batch(raw), self._batch)
        return {self.spec.name: self._batch}

    def postprocess(self, outputs: dict[str, np.ndarray]) -> list[list[tuple[int, float]]]:
        """Per item, the top-k (class index, probability) pairs, most probable first."""
        scores = _select_output(self.name, outputs, self.output_name)
        if scores.ndim < 1 or scores.shape[0] != self.batch_size:
            raise Unsupported(
                f"pipeline 'classify' expects scores shaped [{self.batch_size}, classes]; "
                f"got {list(scores.shape)}"
            )
        # [N, K, 1, 1] heads (global pooling + 1x1 conv) flatten to [N, K].
        scores = scores.reshape(self.batch_size, -1)
        probs = softmax(scores, axis=1) if self.apply_softmax else scores
        idx, val = top_k(probs, self.top_k)
        return [list(zip(row_i.tolist(), row_v.tolist())) for row_i, row_v in zip(idx, val)]

    def calibration_batches(self, n: int) -> list[dict[str, np.ndarray]]:
        batches = []
        for b in range(n):
            out = self._new_batch()
            self._fill(self._calibration_images(b), out)
            batches.append({self.spec.name: out})
        return batches


# --------------------------------------------------------------------------------------------
# detect


class DetectPipeline(_ImagePipeline):
    """Letterbox to H x W, scale, NCHW; then score filter, box decode, class-aware NMS.

    Model output: one [N, 4+1+C, A] (channels first, YOLOv5/v8 exports) or [N, A, 4+1+C] (channels
    last, YOLOX) tensor of (cx, cy, w, h, objectness, class scores...) per anchor. With
    `objectness: false` the layout is 4+C (YOLOv8). Result: per image, a list of
    (x1, y1, x2, y2, score, class) in original-image pixels, best first.

    Options (besides image_size, image_format, jpeg_quality, output as for classify):
      channel_order    rgb (default, YOLOv5/v8) | bgr (YOLOX)
      input_scale      pixel multiplier, default 1/255; 1.0 feeds 0..255 (YOLOX)
      pad_position     center (default) | top_left (YOLOX)
      layout           auto (default: the shorter of the two non-batch axes is channels)
                       | channels_first | channels_last
      objectness       true (default): channel 4 is objectness and score = obj * class prob
      box_decode       none (default: boxes already in input pixels) | yolox (raw grid offsets,
                       as exported by YOLOX without decode_in_inference)
      strides          feature-map strides for box_decode=yolox, default [8, 16, 32]
      conf_threshold   default 0.25
      iou_threshold    default 0.45
      max_candidates   boxes entering NMS, default 30000
      max_detections   boxes kept per image, default 300
    """

    name = "detect"
    options = IMAGE_OPTIONS + (
        Option("input_scale", "number", 1 / 255, "pixel multiplier; 1.0 feeds 0..255 (YOLOX)"),
        Option("pad_position", "center | top_left", "center",
               "where the letterboxed image sits (YOLOX: top_left)"),
        Option("layout", "auto | channels_first | channels_last", "auto",
               "output layout; auto: the shorter non-batch axis is channels"),
        Option("objectness", "bool", True,
               "channel 4 is objectness, score = obj x class prob (YOLOv8: false)"),
        Option("box_decode", "none | yolox", "none",
               "none: boxes in input pixels; yolox: raw grid offsets (no decode_in_inference)"),
        Option("strides", "list of ints", [8, 16, 32], "feature-map strides for box_decode yolox"),
        Option("conf_threshold", "number 0..1", 0.25, "score a box needs to be kept"),
        Option("iou_threshold", "number 0..1", 0.45, "NMS overlap above which a box is dropped"),
        Option("max_candidates", "int >= 1", 30000, "boxes entering NMS"),
        Option("max_detections", "int >= 1", 300, "boxes kept per image"),
    )  # fmt: skip

    def _configure(self, inputs: Sequence[TensorSpec], opts: _Options) -> None:
        super()._configure(inputs, opts)
        self.input_scale = opts.number("input_scale", 1 / 255, 1e-6, 1e6)
        self.pad_position = opts.choice("pad_position", ("center", "top_left"), "center")
        self.layout = opts.choice("layout", ("auto", "channels_first", "channels_last"), "auto")
        self.objectness = opts.boolean("objectness", True)
        self.box_decode = opts.choice("box_decode", ("none", "yolox"), "none")
        strides = opts.given.get("strides", (8, 16, 32))
        if (
            isinstance(strides, (str, bytes))
            or not isinstance(strides, Sequence)
            or not strides
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in strides)
        ):
            raise opts._bad("strides", strides, "a list of positive integers such as [8, 16, 32]")
        self.strides = tuple(strides)
        self.conf_threshold = opts.number("conf_threshold", 0.25, 0.0, 1.0)
        self.iou_threshold = opts.number("iou_threshold", 0.45, 0.0, 1.0)
        self.max_candidates = opts.integer("max_candidates", 30000, 1)
        self.max_detections = opts.integer("max_detections", 300, 1)
        if self.channels != 3:
            raise Unsupported(
                f"pipeline 'detect' needs a 3-channel image input; model input "
                f"{self.spec.name!r} is {self.spec.dtype} {list(self.spec.shape)}"
            )
        self._scale = np.full(self.channels, self.input_scale, dtype=np.float32)
        # Per image: scale, pad_left, pad_top, original width, original height. Identity until
        # the first preprocess, so postprocess on its own reports model-input pixels.
        self._geometry = np.tile(
            np.array([1.0, 0.0, 0.0, self.width, self.height]), (self.batch_size, 1)
        )
        self._canvas = np.empty((self.height, self.width, 3), dtype=np.uint8)
        self._grid, self._grid_stride = (
            self._yolox_grid() if self.box_decode == "yolox" else (None, None)
        )
        # Detections kept, over every postprocessed iteration: a postprocess timed on empty
        # results (a real detector on synthetic frames) is an empty NMS, and the report says so.
        self._kept = 0
        self._postprocessed = 0

    def _yolox_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Anchor-cell offsets and strides in YOLOX's output order (stride by stride, row-major)."""
        cells, cell_strides = [], []
        for s in self.strides:
            gh, gw = self.height // s, self.width // s
            yv, xv = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
            cells.append(np.stack((xv, yv), axis=-1).reshape(-1, 2))
            cell_strides.append(np.full(gh * gw, s))
        return (
            np.concatenate(cells).astype(np.float32),
            np.concatenate(cell_strides).astype(np.float32)[:, None],
        )

    # -- preprocess -------------------------------------------------------------------------

    def _fill(self, raw: Sequence[bytes], out: np.ndarray, geometry: np.ndarray) -> None:
        canvas = self._canvas
        for i, data in enumerate(raw):
            img = _decode(data, cv2.IMREAD_COLOR, i)
            h, w = img.shape[:2]
            r, left, top, new_w, new_h = letterbox_geometry(
                (h, w), (self.height, self.width), self.pad_position
            )
            canvas.fill(LETTERBOX_FILL)
            canvas[top : top + new_h, left : left + new_w] = cv2.resize(
                img, (new_w, new_h), interpolation=cv2.INTER_LINEAR
            )
            self._write_planes(canvas, out[i], self._scale)
            geometry[i] = (r, left, top, w, h)

    def preprocess(self, raw: Sequence[bytes]) -> dict[str, np.ndarray]:
        self._fill(self._next_batch(raw), self._batch, self._geometry)
        return {self.spec.name: self._batch}

    def calibration_batches(self, n: int) -> list[dict[str, np.ndarray]]:
        # Own geometry array: calibration must not disturb the boxes of the timed batch.
        geometry = np.empty_like(self._geometry)
        batches = []
        for b in range(n):
            out = self._new_batch()
            self._fill(self._calibration_images(b), out, geometry)
            batches.append({self.spec.name: out})
        return batches

    # -- postprocess ------------------------------------------------------------------------

    def _predictions(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The output as an [N, A, channels] view (a transpose, not a copy, for channels first)."""
        pred = _select_output(self.name, outputs, self.output_name)
        min_channels = 6 if self.objectness else 5
        layout_hint = "set option layout to channels_first or channels_last"
        if pred.ndim != 3 or pred.shape[0] != self.batch_size:
            raise Unsupported(
                f"pipeline 'detect' expects output [{self.batch_size}, 4+1+classes, anchors] or "
                f"[{self.batch_size}, anchors, 4+1+classes]; got {list(pred.shape)}"
            )
        layout = self.layout
        if layout == "auto":
            if pred.shape[1] == pred.shape[2]:
                raise Unsupported(
                    f"pipeline 'detect' cannot tell channels from anchors in output "
                    f"{list(pred.shape)}; {layout_hint}"
                )
            # Anchor counts are in the thousands, channel counts 4+1+C are far smaller.
            layout = "channels_first" if pred.shape[1] < pred.shape[2] else "channels_last"
        if layout == "channels_first":
            pred = pred.transpose(0, 2, 1)
        if pred.shape[2] < min_channels:
            raise Unsupported(
                f"pipeline 'detect' read output {list(pred.shape)} as {layout} with "
                f"{pred.shape[2]} channels, fewer than the {min_channels} that 4 box + "
                f"{'1 objectness + ' if self.objectness else ''}classes need; {layout_hint}"
            )
        if self._grid is not None and pred.shape[1] != self._grid.shape[0]:
            raise Unsupported(
                f"pipeline 'detect' box_decode=yolox with strides {list(self.strides)} on a "
                f"{self.height}x{self.width} input expects {self._grid.shape[0]} anchors; "
                f"output {list(pred.shape)} has {pred.shape[1]}"
            )
        return pred

    def _detect_one(self, pred: np.ndarray, geometry: np.ndarray) -> list[tuple]:
        """[A, channels] predictions of one image -> [(x1, y1, x2, y2, score, class), ...]."""
        cls_start = 5 if self.objectness else 4
        conf = self.conf_threshold
        if self.objectness:
            # Class scores are probabilities (<= 1), so score = obj * p(class) <= obj and rows
            # with obj <= conf cannot pass: dropping them first means the class scores of most
            # anchors are never read.
            candidates = np.flatnonzero(pred[:, 4] > conf)
            rows = pred[candidates]
            cls_scores = rows[:, cls_start:]
            class_ids = cls_scores.argmax(axis=1)
            scores = rows[:, 4] * np.take_along_axis(cls_scores, class_ids[:, None], 1)[:, 0]
        else:
            cls_all = pred[:, cls_start:]
            class_ids_all = cls_all.argmax(axis=1)
            best = np.take_along_axis(cls_all, class_ids_all[:, None], 1)[:, 0]
            candidates = np.flatnonzero(best > conf)
            rows = pred[candidates]
            class_ids, scores = class_ids_all[candidates], best[candidates]
        passed = scores > conf
        candidates, rows = candidates[passed], rows[passed]
        class_ids, scores = class_ids[passed], scores[passed].astype(np.float32)
        if scores.size == 0:
            return []
        if scores.size > self.max_candidates:
            best = np.argpartition(-scores, self.max_candidates - 1)[: self.max_candidates]
            candidates, rows = candidates[best], rows[best]
            class_ids, scores = class_ids[best], scores[best]

        xy = rows[:, 0:2].astype(np.float32)
        wh = rows[:, 2:4].astype(np.float32)
        if self._grid is not None:
            stride = self._grid_stride[candidates]
            xy = (xy + self._grid[candidates]) * stride
            wh = np.exp(wh) * stride
        boxes = np.concatenate((xy - wh / 2, xy + wh / 2), axis=1)

        keep = nms(boxes, scores, self.iou_threshold, class_ids, self.max_detections)

        r, left, top, width, height = geometry
        kept = boxes[keep]
        kept[:, [0, 2]] = np.clip((kept[:, [0, 2]] - left) / r, 0, width)
        kept[:, [1, 3]] = np.clip((kept[:, [1, 3]] - top) / r, 0, height)
        return [
            (x1, y1, x2, y2, s, c)
            for (x1, y1, x2, y2), s, c in zip(
                kept.tolist(), scores[keep].tolist(), class_ids[keep].tolist()
            )
        ]

    def postprocess(self, outputs: dict[str, np.ndarray]) -> list[list[tuple]]:
        """Per image, (x1, y1, x2, y2, score, class) in original-image pixels, best first."""
        pred = self._predictions(outputs)
        result = [self._detect_one(pred[i], self._geometry[i]) for i in range(self.batch_size)]
        self._kept += sum(map(len, result))
        self._postprocessed += 1
        return result

    def facts(self) -> dict[str, Any]:
        """`runs` columns: detections kept per iteration (all images of the batch), on average."""
        if not self._postprocessed:
            return {}
        return {"detections_per_iteration": self._kept / self._postprocessed}


_BUILTIN: dict[str, type] = {
    "raw": RawPipeline,
    "classify": ClassifyPipeline,
    "detect": DetectPipeline,
}
