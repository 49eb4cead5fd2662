"""Resolution: a zoo name or a user's ONNX file -> a model resolved for one batch size."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perflab.errors import ModelError
from perflab.models.files import (
    META_DIM_DEFAULTS,
    META_TASK,
    META_VOCAB,
    TensorSpec,
    _check_external_data,
    _dims_of,
    _dtype_name,
    _load_proto,
    _metadata,
    _models_dir,
    _safe_stem,
    _save_model,
    _sha256_file,
    _write_atomic,
)
from perflab.models.graph_cost import _analyze, _infer, _skeleton
from perflab.models.zoo import _ZOO, ZOO, _zoo_file
from perflab.untrusted import check_regular_file

if TYPE_CHECKING:  # onnx and numpy stay out of `import perflab`'s import time
    import numpy as np
    import onnx

#: Bumped whenever `resolve`'s batch rewrite changes what it writes.
REWRITE_VERSION = 2

# ---------------------------------------------------------------------------------------------
# Resolution
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """A model resolved for one batch size: the file to load and everything known about it.

    `path` is the fp32 ONNX file to load (a cached rewrite when the batch dim had to be made
    symbolic), `sha256` the hash of that file's bytes and `source_sha256` of the file the user
    named (equal unless rewritten). `inputs` have every dim resolved; `outputs` are resolved
    where shape inference could, -1 elsewhere. Cost fields are per sample at these shapes.
    """

    name: str
    path: Path
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    kind: str
    notes: tuple[str, ...]
    flops_per_sample: float
    param_bytes: int
    activation_bytes_per_sample: float
    batch_size: int = 1
    source: str = ""
    source_sha256: str = ""
    opset: int = 0
    macs_per_sample: float = 0.0
    node_count: int = 0
    metadata: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def meta(self, key: str, default: str | None = None) -> str | None:
        """A metadata_props value of the model (zoo models describe their postprocessing)."""
        return dict(self.metadata).get(key, default)


def _kind(inputs: Sequence[TensorSpec]) -> str:
    if (
        len(inputs) == 1
        and len(inputs[0].shape) == 4
        and inputs[0].shape[1] in (1, 3)
        and inputs[0].dtype.startswith(("float", "bfloat"))
    ):
        return "image"
    if (
        inputs
        and all(t.dtype in ("int64", "int32") for t in inputs)
        and any(t.dtype == "int64" for t in inputs)
    ):
        return "sequence"
    return "tensor"


def _graph_inputs(model: onnx.ModelProto) -> list[Any]:
    inits = {i.name for i in model.graph.initializer}
    return [vi for vi in model.graph.input if vi.name not in inits]


def _resolve_dims(
    model: onnx.ModelProto, batch_size: int, input_shapes: Mapping[str, Sequence[int | str]]
) -> tuple[dict[str, tuple[int, ...]], list[str], list[str]]:
    """Resolve every input dim; returns (shapes, notes, names of inputs whose batch is 1)."""
    defaults = json.loads(_metadata(model).get(META_DIM_DEFAULTS, "{}") or "{}")
    inputs = _graph_inputs(model)
    names = [vi.name for vi in inputs]
    unknown = [k for k in input_shapes if k not in names]
    if unknown:
        raise ModelError(
            f"input_shapes names {', '.join(map(repr, unknown))} but the model "
            f"has no input of that name; its inputs are "
            f"{', '.join(map(repr, names))}"
        )
    shapes: dict[str, tuple[int, ...]] = {}
    notes: list[str] = []
    fixed_one: list[str] = []
    # A symbol names one size across all inputs (bert's S in input_ids and attention_mask),
    # so a size given for it anywhere binds it everywhere.
    bound: dict[str, int] = {}
    per_input: list[tuple[Any, list[int | str], list[int | None]]] = []
    for vi in inputs:
        model_dims = _dims_of(vi) if vi.type.tensor_type.HasField("shape") else None
        given = input_shapes.get(vi.name)
        if model_dims is None:
            if given is None:
                raise ModelError(
                    f"input {vi.name!r} has no declared shape; set input_shapes, "
                    f"e.g. input_shapes: {{{vi.name}: [N, ...]}}"
                )
            model_dims = ["?"] * len(given)
        if given is not None and len(given) != len(model_dims):
            raise ModelError(
                f"input_shapes[{vi.name!r}] has {len(given)} dims but the model's "
                f"input has {len(model_dims)}: {model_dims}"
            )
        wants: list[int | None] = []
        for j, md in enumerate(model_dims):
            want = given[j] if given is not None else None
            if isinstance(want, str) and want != "N":
                if want.isdigit():
                    want = int(want)
                elif want == md:
                    want = None  # the model's own symbol: resolve it as if not given
                else:
                    raise ModelError(
                        f"input_shapes[{vi.name!r}] dim {j} is {want!r}; use an int, 'N' for "
                        f"the batch size, or the model's own dim name {md!r}"
                    )
            if want == "N":
                want = batch_size
            if want is not None and (
                isinstance(want, bool) or not isinstance(want, int) or want <= 0
            ):
                raise ModelError(
                    f"input_shapes[{vi.name!r}] dim {j} is {want!r}; dims must "
                    "be positive ints or 'N'"
                )
            if j == 0 and want is not None and want != batch_size:
                raise ModelError(
                    f"input_shapes gives input {vi.name!r} dim 0 = {want} but "
                    f"batch_size is {batch_size}; write N for the batch dim"
                )
            if j == 0 and want is None and isinstance(md, str) and md != "?":
                want = batch_size
            named = isinstance(md, str) and md != "?"
            if named and want is not None and bound.setdefault(md, want) != want:
                raise ModelError(
                    f"dim {md!r} is given two sizes ({bound[md]} and {want}, "
                    f"the second for input {vi.name!r}); it must be one size"
                )
            wants.append(want)
        per_input.append((vi, model_dims, wants))

    default_noted: set[str] = set()
    for vi, model_dims, wants in per_input:
        dims: list[int | None] = []
        for j, (md, want) in enumerate(zip(model_dims, wants)):
            if isinstance(md, int) and md > 0:
                if j == 0 and md != batch_size:
                    if md != 1:
                        raise ModelError(
                            f"input {vi.name!r} has its batch dim fixed at {md}; "
                            f"run it with batch_size {md}"
                        )
                    fixed_one.append(vi.name)
                    dims.append(batch_size)
                    continue
                if want is not None and want != md:
                    raise ModelError(
                        f"input {vi.name!r} dim {j} is fixed at {md} in the "
                        f"model; input_shapes asks for {want}"
                    )
                dims.append(md)
            elif want is not None:
                dims.append(want)
            elif md in bound:
                dims.append(bound[md])
            elif md in defaults:
                dims.append(int(defaults[md]))
                if md not in default_noted:
                    default_noted.add(md)
                    notes.append(f"dim {md!r} set to its default {defaults[md]}")
            elif j == 0:
                dims.append(batch_size)
            else:
                dims.append(None)
        if any(d is None for d in dims):
            j = dims.index(None)
            example = ["N" if k == 0 else (d if d is not None else "?") for k, d in enumerate(dims)]
            raise ModelError(
                f"input {vi.name!r} dim {j} ({model_dims[j]!r}) is not fixed by the model; "
                f"set input_shapes, e.g. input_shapes: {{{vi.name}: "
                f"[{', '.join(map(str, example))}]}} with the ?s filled in"
            )
        shapes[vi.name] = tuple(int(d) for d in dims)  # type: ignore[arg-type]
    return shapes, notes, fixed_one


def _const_values(model: onnx.ModelProto) -> dict[str, Any]:
    from onnx import numpy_helper

    vals: dict[str, Any] = {}
    for init in model.graph.initializer:
        if init.data_type == 7 and math.prod(init.dims) <= 16:  # small int64 shape tensors
            vals[init.name] = numpy_helper.to_array(init)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == 7 and math.prod(a.t.dims) <= 16:
                    vals[node.output[0]] = numpy_helper.to_array(a.t)
    return vals


def _make_batch_symbolic(model: onnx.ModelProto, names: Sequence[str]) -> list[str]:
    """Make dim 0 of the named inputs (and of outputs fixed at 1) the symbol N, in place.

    Exporters that traced at batch 1 also bake the 1 into Reshape targets; a Reshape whose
    data has batch N but whose target starts with a literal 1 gets a 0 there ("copy dim 0").
    Fixing one Reshape can expose the next, so shape inference runs until nothing changes.
    Returns what was changed, for the notes.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    changes = []
    for vi in model.graph.input:
        if vi.name in names:
            vi.type.tensor_type.shape.dim[0].Clear()
            vi.type.tensor_type.shape.dim[0].dim_param = "N"
    for vi in model.graph.output:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].Clear()
            dims[0].dim_param = "N"
    del model.graph.value_info[:]
    fixed: set[str] = set()
    added: set[str] = set()
    for _ in range(16):
        inferred = _infer(_skeleton(model))
        # Inference renames symbols as they pass through ops (N becomes unk__3), so any
        # leading dim that is not a number counts as the batch.
        sym: dict[str, bool] = {}
        for vi in (*inferred.graph.value_info, *inferred.graph.input):
            tt = vi.type.tensor_type
            sym[vi.name] = (
                tt.HasField("shape")
                and len(tt.shape.dim) > 0
                and not tt.shape.dim[0].HasField("dim_value")
            )
        consts = _const_values(model)
        progress = False
        for node in model.graph.node:
            key = node.name or node.output[0]
            if node.op_type != "Reshape" or key in fixed or len(node.input) < 2:
                continue
            target = consts.get(node.input[1])
            if target is None or target.ndim != 1 or not len(target) or target[0] != 1:
                continue
            if not sym.get(node.input[0]):
                continue
            allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
            new = target.copy()
            if not allowzero:
                new[0] = 0
            elif -1 not in target:
                new[0] = -1
            else:
                continue
            new_name = f"{node.input[1]}__batchN"
            if new_name not in consts and new_name not in added:
                added.add(new_name)
                model.graph.initializer.append(
                    numpy_helper.from_array(np.asarray(new, dtype=np.int64), new_name)
                )
                if model.ir_version < 4:  # IR 3 requires every initializer among the inputs
                    model.graph.input.append(
                        helper.make_tensor_value_info(new_name, TensorProto.INT64, [len(new)])
                    )
            node.input[1] = new_name
            fixed.add(key)
            changes.append(f"Reshape {key!r} target {target.tolist()} -> {new.tolist()}")
            progress = True
        if not progress:
            break
    # Drop the replaced targets: ORT warns about unused initializers, and in IR < 4 files
    # they are also listed as graph inputs.
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    dropped = {i.name for i in model.graph.initializer if i.name not in used}
    if dropped:
        kept = [i for i in model.graph.initializer if i.name not in dropped]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
        kept_inputs = [vi for vi in model.graph.input if vi.name not in dropped]
        del model.graph.input[:]
        model.graph.input.extend(kept_inputs)
    return changes


def _batch_rewrite(
    model_path: Path, sha: str, names: Sequence[str], cache_dir: str | os.PathLike[str] | None
) -> tuple[Path, list[str]]:
    import onnx

    d = _models_dir(cache_dir)
    out = d / f"{_safe_stem(model_path.stem)}-{sha[:16]}-batchN.v{REWRITE_VERSION}.onnx"
    log = out.with_suffix(".json")
    if out.exists() and log.exists():
        return out, json.loads(log.read_text())
    model = onnx.load(str(model_path))  # with external data: the copy must be whole
    changes = _make_batch_symbolic(model, names)
    _save_model(model, out)
    _write_atomic(log, json.dumps(changes).encode())
    return out, changes


def _zoo_image_size(name: str, input_shapes: Mapping[str, Sequence[int | str]]) -> int | None:
    """The image size a zoo model must be built at to match `input_shapes`, if not default."""
    entry = _ZOO[name]
    if entry.image_size is None:
        return None
    input_name = "images" if name == "yolo-s" else "input"
    dims = input_shapes.get(input_name)
    if dims is None or len(dims) != 4:
        return None  # the general resolution reports what is wrong
    h, w = dims[2], dims[3]
    if not (isinstance(h, int) and isinstance(w, int)) or (h, w) == (entry.image_size,) * 2:
        return None
    if h != w:
        raise ModelError(
            f"built-in model {name!r} takes square inputs; input_shapes asks for {h}x{w}"
        )
    if h < 32 or h % 32:
        raise ModelError(
            f"built-in model {name!r} needs an image size that is a multiple of "
            f"32; input_shapes asks for {h}"
        )
    return h


def resolve(
    model: str | os.PathLike[str],
    *,
    batch_size: int,
    input_shapes: Mapping[str, Sequence[int | str]] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ModelInfo:
    """Find the ONNX file for `model` and resolve its inputs for `batch_size`.

    `model` is a built-in name (built and cached under `cache_root(cache_dir)/models`) or a
    path to an .onnx file. Dims the model leaves open come from `input_shapes`, where "N"
    stands for the batch size; dim 0 is taken as the batch dim. A model traced with a fixed
    batch of 1 that is asked for a larger batch is run from a cached copy with a symbolic
    batch dim (`notes` says so). Raises ModelError, naming the problem, for a missing file,
    a file that is not ONNX, missing external data, unknown input names, or dims that stay
    open.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ModelError(f"batch_size must be a positive int, got {batch_size!r}")
    input_shapes = dict(input_shapes or {})
    key = os.fspath(model)
    notes: list[str] = []
    if key in _ZOO:
        image_size = _zoo_image_size(key, input_shapes)
        path, sha = _zoo_file(key, image_size, cache_dir)
        name = key
        if image_size:
            notes.append(f"built at image size {image_size} to match input_shapes")
    else:
        path = Path(key).expanduser()
        if not path.exists():
            raise ModelError(
                f"model {key!r} does not exist: it is neither a file nor a "
                f"built-in model ({', '.join(ZOO)})"
            )
        check_regular_file(path, "model file", ModelError)
        sha = _sha256_file(path)
        name = path.stem
    proto = _load_proto(path)
    _check_external_data(proto, path)
    shapes, dim_notes, fixed_one = _resolve_dims(proto, batch_size, input_shapes)
    notes += dim_notes
    run_path, run_sha = path, sha
    if fixed_one:
        run_path, changes = _batch_rewrite(path, sha, fixed_one, cache_dir)
        run_sha = _sha256_file(run_path)
        for n in fixed_one:
            notes.append(
                f"batch dim of input {n!r} was fixed at 1; made symbolic to run batch {batch_size}"
            )
        notes += [f"rewrote {c}" for c in changes]
        proto = _load_proto(run_path)
    analysis = _analyze(proto, shapes, batch_size)
    c = analysis.cost
    if c["uncounted_ops"]:
        notes.append(
            "cost leaves out nodes with unknown shapes or no FLOP rule: "
            + ", ".join(f"{k} x{v}" for k, v in c["uncounted_ops"].items())
        )
    inputs = tuple(
        TensorSpec(vi.name, shapes[vi.name], _dtype_name(vi.type.tensor_type.elem_type))
        for vi in _graph_inputs(proto)
    )
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelInfo(
        name=name,
        path=run_path,
        sha256=run_sha,
        inputs=inputs,
        outputs=analysis.outputs,
        kind=_kind(inputs),
        notes=tuple(notes),
        flops_per_sample=c["flops_per_sample"],
        param_bytes=c["param_bytes"],
        activation_bytes_per_sample=c["activation_bytes_per_sample"],
        batch_size=batch_size,
        source=key,
        source_sha256=sha,
        opset=opset,
        macs_per_sample=c["macs_per_sample"],
        node_count=c["node_count"],
        metadata=tuple(sorted(_metadata(proto).items())),
    )


def random_inputs(
    model: ModelInfo | Sequence[TensorSpec], *, seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded inputs matching the resolved specs: N(0, 1) floats (U(0, 1) for detectors, which
    take 0-1 pixels), token ids below the vocabulary size, all-ones attention masks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    specs = model.inputs if isinstance(model, ModelInfo) else tuple(model)
    meta = dict(model.metadata) if isinstance(model, ModelInfo) else {}
    vocab = int(meta.get(META_VOCAB, 100))
    unit_range = meta.get(META_TASK) == "detection"
    feeds = {}
    for t in specs:
        dtype = np.dtype(t.dtype)
        if dtype.kind == "f":
            a = rng.uniform(0, 1, t.shape) if unit_range else rng.standard_normal(t.shape)
            feeds[t.name] = a.astype(dtype)
        elif dtype.kind in "iu":
            if "mask" in t.name.lower():
                feeds[t.name] = np.ones(t.shape, dtype)
            else:
                feeds[t.name] = rng.integers(0, vocab, t.shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[t.name] = rng.integers(0, 2, t.shape).astype(bool)
        else:
            raise ModelError(f"cannot make random data for input {t.name!r} of dtype {t.dtype}")
    return feeds
