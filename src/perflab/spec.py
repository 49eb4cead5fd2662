"""Experiment files -> frozen, hashable run configs with a stable spec_id.

Validation reads the file and nothing else: no environment changes, no device, no engine import.
The one exception is a user pipeline (`pipeline: file.py:Class`): its module is imported so that a
missing class, a missing compute step or an option its constructor does not take is an error here,
before anything runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from perflab.backends import registry
from perflab.errors import SpecError
from perflab.labels import LABELLED
from perflab.precisions import PRECISIONS
from perflab.untrusted import check_regular_file, quote

# The built-in pipelines (perflab.pipelines.PIPELINES); kept here so that reading a config in a
# worker does not import OpenCV.
PIPELINES = ("raw", "classify", "detect")
MODES = ("latency", "throughput")
TOP_KEYS = (
    "study",
    "model",
    "pipeline",
    "backend",
    "precision",
    "batch_size",
    "mode",
    "inflight",
    "input_shapes",
    "sweep",
    "warmup",
    "measure",
    "options",
    "pipeline_options",
    "timeout_s",
    "seed",
    "machine",
    "repeat",
    "order",
    "order_seed",
    "quiet",
)
# Mappings whose entries may be swept one by one as `options.NAME` / `pipeline_options.NAME`.
MAPPING_KEYS = ("options", "pipeline_options")
# Keys that may be swept: every config key but the study name and the sweep itself.
# Study-level keys (how often and in which order configs run, when the host counts as quiet) are
# not config content and cannot be swept.
STUDY_KEYS = ("study", "sweep", "repeat", "order", "order_seed", "quiet")
SWEEPABLE = tuple(k for k in TOP_KEYS if k not in STUDY_KEYS)
ORDERS = ("interleaved", "random")
QUIET_KEYS = ("max_load", "max_wait_s", "then")
QUIET_THEN = ("stop", "run")
WARMUP_KEYS = ("iterations", "seconds")
MEASURE_KEYS = ("iterations", "seconds", "target_rel_ci", "max_seconds", "min_iterations")
# A sweep this large is more often a mistake than a plan; the CLI asks before running it.
LARGE_SWEEP = 1000
# Repetitions beyond this are a typo more often than a plan (pyperf uses 20 processes).
MAX_REPEAT = 1000
# More configs than one study can hold: counted from the axis lengths, before any is built.
MAX_CONFIGS = 100_000
# An experiment file is a page of YAML; these bound what a hostile one can make perflab do.
MAX_FILE_BYTES = 1 << 20
MAX_NODES = 200_000  # YAML nodes after aliases are expanded ("billion laughs" expand to 10^9)
# A study name becomes a folder name (data/<study>): one path component, printable, short.
STUDY_NAME = re.compile(r"[^\x00-\x1f\x7f/\\]{1,100}")


@dataclass(frozen=True)
class Policy:
    """When a phase stops: after `iterations`, after `seconds`, or (measure only) once the 95% CI
    of the e2e median is within `target_rel_ci` of it, bounded by `max_seconds`."""

    iterations: int | None = None
    seconds: float | None = None
    target_rel_ci: float | None = None
    max_seconds: float | None = None
    min_iterations: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Quiet:
    """Wait before a run until the host's 1-minute load average per CPU is at most `max_load`,
    for at most `max_wait_s`; then `stop` (the run is recorded as skipped, the study stops) or
    `run` (measure anyway; the run is flagged as measured on a busy host)."""

    max_load: float = 0.5
    max_wait_s: float = 60.0
    then: str = "stop"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunConfig:
    study: str
    model: str
    pipeline: str
    backend: str
    precision: str
    batch_size: int
    mode: str = "latency"
    inflight: int = 1  # requests kept in flight (more than 1 only in throughput mode)
    input_shapes: tuple[tuple[str, tuple[int | str, ...]], ...] = ()
    options: tuple[tuple[str, Any], ...] = ()
    pipeline_options: tuple[tuple[str, Any], ...] = ()
    warmup: Policy = field(default_factory=lambda: Policy(iterations=10))
    measure: Policy = field(default_factory=lambda: Policy(iterations=200))
    timeout_s: float = 600.0
    seed: int = 0
    # The Dask worker (by name) that must run this config; None: any machine.
    machine: str | None = None
    # Which repetition of the config this run is (0-based); repetitions share the spec_id.
    repetition: int = 0
    # The seed that shuffled the run order (order: random); None for file order.
    order_seed: int | None = None
    quiet: Quiet | None = None

    @property
    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def pipeline_option_dict(self) -> dict[str, Any]:
        return dict(self.pipeline_options)

    @property
    def shape_dict(self) -> dict[str, list[int | str]]:
        return {name: list(dims) for name, dims in self.input_shapes}

    def content(self) -> dict[str, Any]:
        """The config as plain JSON-able data (the study name excluded: it names, not defines)."""
        data = asdict(self)
        data.pop("study")
        data.pop("_swept")
        # How often and when a config runs does not change what it is.
        data.pop("repetition")
        data.pop("order_seed")
        data.pop("quiet")
        data["options"] = self.option_dict
        data["pipeline_options"] = self.pipeline_option_dict
        data["input_shapes"] = self.shape_dict
        data["warmup"] = self.warmup.as_dict()
        data["measure"] = self.measure.as_dict()
        if self.machine is None:
            data.pop("machine")  # so configs that pin no machine keep the spec_id they had
        return data

    @property
    def spec_id(self) -> str:
        from perflab.store import SCHEMA_VERSION

        text = json.dumps({"schema": SCHEMA_VERSION, **self.content()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        model = Path(self.model).stem if self.model.endswith(".onnx") else self.model
        parts = [model, self.backend, self.precision, f"b{self.batch_size}"]
        if self.mode != "latency":
            parts.append(f"{self.mode}x{self.inflight}")
        for key in self._swept:
            if "." in key:
                group, name = key.split(".", 1)
                parts.append(f"{name}={dict(getattr(self, group))[name]}")
            elif key not in LABELLED:
                value = getattr(self, key)
                if isinstance(value, Policy):
                    value = value.as_dict()
                elif isinstance(value, tuple):
                    value = dict(value)
                parts.append(f"{key}={value}")
        return " ".join(parts)

    # Sweep axes ("seed", "options.threads"), so labels tell swept configs apart; not content.
    _swept: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def to_json(self) -> str:
        return json.dumps(
            {
                "study": self.study,
                **self.content(),
                "_swept": list(self._swept),
                "repetition": self.repetition,
                "order_seed": self.order_seed,
                "quiet": self.quiet.as_dict() if self.quiet else None,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        data = json.loads(text)
        quiet = data.get("quiet")
        return replace(
            _config(data["study"], data, source="<worker>"),
            _swept=tuple(data.get("_swept", ())),
            repetition=int(data.get("repetition", 0)),
            order_seed=data.get("order_seed"),
            quiet=Quiet(**quiet) if quiet else None,
        )


@dataclass(frozen=True)
class Study:
    """The distinct configs of an experiment file, and how to run them: `repeat` times each, in
    separate processes, round by round (every config once, then every config again), in file
    order or, with order `random`, shuffled anew each round by a generator seeded `order_seed`."""

    name: str
    source: str
    configs: tuple[RunConfig, ...]
    repeat: int = 1
    order: str = "interleaved"
    order_seed: int = 0

    def schedule(self, first_repetition: dict[str, int] | None = None) -> list[RunConfig]:
        """Every run of the study in execution order, each config with its `repetition` index.

        `first_repetition` maps spec_id -> the index its first new repetition gets (to add
        repetitions to a folder that holds some)."""
        import random

        first = first_repetition or {}
        rng = random.Random(self.order_seed)
        seed = self.order_seed if self.order == "random" else None
        runs = []
        for round_ in range(self.repeat):
            batch = list(self.configs)
            if self.order == "random":
                rng.shuffle(batch)
            runs += [
                replace(c, repetition=first.get(c.spec_id, 0) + round_, order_seed=seed)
                for c in batch
            ]
        return runs


def load(path: str | Path, *, max_configs: int = MAX_CONFIGS) -> Study:
    """Read and validate an experiment file; every error names the file, key, value and choices.

    A sweep of more than `max_configs` configs is refused before any config is built."""
    path = Path(path)
    data = read(path)
    return parse(
        data,
        source=str(path),
        default_study=path.stem,
        max_configs=max_configs,
        base=path.parent,
    )


def read(path: Path) -> Any:
    """The YAML data of an experiment file, refused when it is not a regular file, too large,
    an alias bomb, nested without end, or holds duplicate keys."""
    check_regular_file(path, "experiment file", SpecError)
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SpecError(
            f"{path}: {path.stat().st_size} bytes is too large for an experiment file "
            f"(at most {MAX_FILE_BYTES} bytes)"
        )
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # a SafeLoader subclass
    except _Refused as exc:
        raise SpecError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        if "nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's own depth limit
            raise SpecError(f"{path}: YAML nested too deeply to be an experiment file") from None
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SpecError(f"{path}: YAML syntax error{where}: {problem}") from None
    except RecursionError:
        raise SpecError(f"{path}: YAML nested too deeply to be an experiment file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read experiment file: {exc}") from None
    return data


class _Refused(Exception):
    """A YAML document refused for its shape (not its syntax)."""


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser where built
    """SafeLoader that refuses duplicate keys (the last one would silently win) and documents
    whose aliases expand past MAX_NODES, before anything is constructed from them."""

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return self.construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise _Refused(
                        f"duplicate key {quote(key)} at line {line} (first given at line "
                        f"{seen[key]}); give each key once"
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """Nodes in the document once every alias is replaced by what it names (memoized, so this
    costs the size of the alias graph, not of its expansion)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise _Refused("a YAML alias refers to itself; an experiment file cannot be recursive")
    open_nodes.add(key)
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    size = 1 + sum(_expanded_size(child, sizes, open_nodes) for child in children)
    open_nodes.discard(key)
    if size > MAX_NODES:
        raise _Refused(
            f"YAML aliases expand to more than {MAX_NODES} values; an experiment file needs far "
            "fewer (is it an alias bomb?)"
        )
    sizes[key] = size
    return size


def _check_finite(data: Any, source: str, where: str) -> None:
    """Refuse NaN and infinity anywhere: `.nan` passes every `<` and `>` check (a timeout of NaN
    never fires, a measure of NaN seconds never stops)."""
    if isinstance(data, float) and not math.isfinite(data):
        raise SpecError(f"{source}: key {quote(where or '(top)')}: {data} is not a finite number")
    if isinstance(data, Mapping):
        for k, v in data.items():
            _check_finite(v, source, f"{where}.{k}" if where else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            _check_finite(v, source, f"{where}[{i}]")


def check_study_name(name: Any, source: str) -> str:
    """A study name is one path component (it names data/<study>): printable, no '/', not '.'
    or '..', at most 100 characters."""
    if (
        not isinstance(name, str)
        or not STUDY_NAME.fullmatch(name)
        or name.strip(".") == ""
        or name != name.strip()
    ):
        raise SpecError(
            f"{source}: key 'study': {quote(name)} must be a name of 1 to 100 printable "
            "characters without '/', not '.' or '..' (it names the result folder)"
        )
    return name


def count_configs(blocks: list[list[tuple[str, list[Any]]]]) -> int:
    """Configs a sweep expands to (before duplicates are merged), from its axis lengths alone."""
    return sum(math.prod(len(values) for _, values in axes) for axes in blocks)


def parse(
    data: Any,
    *,
    source: str = "<spec>",
    default_study: str = "study",
    max_configs: int = MAX_CONFIGS,
    base: Path | None = None,
) -> Study:
    """Validate `data` (an experiment file's mapping); `base` is the folder that relative user
    pipeline files are read from (the experiment file's; default the current folder)."""
    if not isinstance(data, Mapping):
        raise SpecError(
            f"{source}: expected a mapping of keys (study, model, sweep, ...), got {_kind(data)}"
        )
    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise SpecError(
            f"{source}: unknown key {quote(unknown[0])}; valid keys: {', '.join(TOP_KEYS)}"
        )
    _check_finite(data, source, "")
    study = check_study_name(data.get("study", default_study), source)
    sweep = data.get("sweep") or {}
    # A mapping is one cartesian product; a list of mappings is several, run one after another
    # (for combinations a product cannot express).
    blocks = sweep if isinstance(sweep, list) else [sweep]
    if not blocks or not all(isinstance(b, Mapping) for b in blocks):
        raise SpecError(
            f"{source}: key 'sweep': expected a mapping of axis -> list of values (or a list of "
            f"such mappings), got {_kind(sweep)}"
        )
    for group in MAPPING_KEYS:
        if not isinstance(data.get(group) or {}, Mapping):
            raise SpecError(
                f"{source}: key {quote(group)}: {quote(data[group])} must be a mapping of name -> value"
            )
    axes = [_axes(block, data, source) for block in blocks]
    n = count_configs(axes)
    if n > max_configs:
        hint = (
            f"pass --yes to run them all (at most {MAX_CONFIGS})"
            if max_configs < MAX_CONFIGS
            else "split it into several experiment files"
        )
        raise SpecError(
            f"{source}: the sweep expands to {n} configs, more than {max_configs}; {hint}"
        )
    configs = []
    for block_axes in axes:
        configs += _expand(study, data, block_axes, source, base)
    quiet = _quiet(data.get("quiet"), source)
    if quiet is not None:
        configs = [replace(c, quiet=quiet) for c in configs]
    seen: dict[str, RunConfig] = {}
    for c in configs:
        seen.setdefault(c.spec_id, c)
    _check_options(seen.values(), source)
    repeat = data.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
        raise SpecError(
            f"{source}: key 'repeat': {repeat!r} must be an integer from 1 to {MAX_REPEAT} "
            "(runs per config, each in its own process)"
        )
    order = data.get("order", "interleaved")
    if order not in ORDERS:
        raise SpecError(
            f"{source}: key 'order': {order!r} is not an order; valid: {', '.join(ORDERS)}"
        )
    order_seed = data.get("order_seed", 0)
    if isinstance(order_seed, bool) or not isinstance(order_seed, int):
        raise SpecError(f"{source}: key 'order_seed': {order_seed!r} must be an integer")
    return Study(
        name=study,
        source=source,
        configs=tuple(seen.values()),
        repeat=repeat,
        order=order,
        order_seed=order_seed,
    )


def _quiet(value: Any, source: str) -> Quiet | None:
    if value is None:
        return None
    example = "{max_load: 0.5, max_wait_s: 60, then: stop}"
    if not isinstance(value, Mapping):
        raise SpecError(f"{source}: key 'quiet': {value!r} must be a mapping like {example}")
    for k, v in value.items():
        if k not in QUIET_KEYS:
            raise SpecError(f"{source}: key 'quiet.{k}': unknown; valid: {', '.join(QUIET_KEYS)}")
        if k == "then":
            if v not in QUIET_THEN:
                raise SpecError(
                    f"{source}: key 'quiet.then': {v!r} is not one of {', '.join(QUIET_THEN)}"
                )
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf:
            raise SpecError(f"{source}: key 'quiet.{k}': {v!r} must be a non-negative number")
    return Quiet(
        max_load=float(value.get("max_load", 0.5)),
        max_wait_s=float(value.get("max_wait_s", 60.0)),
        then=value.get("then", "stop"),
    )


def _check_options(configs: Any, source: str) -> None:
    """Backend and pipeline options against what each declares, once per distinct combination."""
    from perflab import pipelines

    checked: set[Any] = set()
    for c in configs:
        key = ("backend", c.backend, c.options, c.batch_size)
        if key not in checked:
            checked.add(key)
            try:
                cls = registry.backend_class(c.backend)
                check = getattr(cls, "check_options", None)  # a plugin may not derive Backend
                if check is not None:
                    check(c.backend, c.option_dict, c.batch_size)
            except SpecError as exc:
                raise SpecError(f"{source}: {exc}") from None
        owns_engine = c.backend == registry.CUSTOM
        key = ("pipeline", c.pipeline, c.pipeline_options, owns_engine)
        if key not in checked:
            checked.add(key)
            try:
                pipelines.check(
                    c.pipeline, c.pipeline_option_dict, owns_engine=owns_engine, base=None
                )
            except SpecError as exc:
                raise SpecError(f"{source}: {exc}") from None


def _axes(
    sweep: Mapping[str, Any], data: Mapping[str, Any], source: str
) -> list[tuple[str, list[Any]]]:
    axes: list[tuple[str, list[Any]]] = []
    for key, values in sweep.items():
        top = key.split(".", 1)[0]
        if top not in SWEEPABLE or (key.count(".") and top not in MAPPING_KEYS):
            raise SpecError(
                f"{source}: key {quote(f'sweep.{key}')}: not a sweepable key; sweepable: "
                f"{', '.join(SWEEPABLE)}, options.NAME or pipeline_options.NAME"
            )
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise SpecError(
                f"{source}: key {quote(f'sweep.{key}')}: empty list; give at least one value"
            )
        if key in data and "." not in key:
            raise SpecError(
                f"{source}: key {quote(key)} is given both at the top level and under sweep"
            )
        axes.append((key, values))
    return axes


def _expand(
    study: str,
    data: Mapping[str, Any],
    axes: list[tuple[str, list[Any]]],
    source: str,
    base: Path | None,
) -> list[RunConfig]:
    swept = tuple(k for k, _ in axes)
    configs = []
    for combo in itertools.product(*(values for _, values in axes)):
        merged = dict(data)
        merged.pop("sweep", None)
        for group in MAPPING_KEYS:
            merged[group] = dict(data.get(group) or {})
        for (key, _), value in zip(axes, combo):
            if "." in key:
                group, name = key.split(".", 1)
                merged[group][name] = value
            else:
                merged[key] = value
        configs.append(replace(_config(study, merged, source, base), _swept=swept))
    return configs


def _config(study: str, d: Mapping[str, Any], source: str, base: Path | None = None) -> RunConfig:
    def bad(key: str, value: Any, expected: str) -> SpecError:
        return SpecError(f"{source}: key {quote(key)}: {quote(value)} {expected}")

    def choice(key: str, default: str, valid: Sequence[str], what: str) -> str:
        value = d.get(key, default)
        if not isinstance(value, str) or value not in valid:
            raise bad(key, value, f"is not a {what}; valid: {', '.join(valid)}")
        return value

    def integer(key: str, default: int, expected: str, least: float = -math.inf) -> int:
        value = d.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise bad(key, value, expected)
        return value

    backend = d.get("backend", "ort-cpu")
    known = registry.names()
    if not isinstance(backend, str) or backend not in known:
        raise bad("backend", backend, f"is not a known backend; known backends: {', '.join(known)}")
    pipeline = d.get("pipeline", "raw")
    is_target = isinstance(pipeline, str) and ":" in pipeline  # pipelines.is_target
    if not isinstance(pipeline, str) or not (pipeline in PIPELINES or is_target):
        raise bad(
            "pipeline",
            pipeline,
            f"is not a pipeline; valid: {', '.join(PIPELINES)}, or FILE.py:CLASS / MODULE:CLASS",
        )
    if is_target:
        where, _, attr = pipeline.rpartition(":")
        if where.endswith(".py") or "/" in where:
            # Workers and later reads find the file wherever they run from.
            path = Path(where)
            pipeline = (
                f"{(path if path.is_absolute() else (base or Path()) / path).resolve()}:{attr}"
            )
    default_model = {"synthetic": "synthetic", registry.CUSTOM: pipeline.rpartition(":")[2]}
    model = d.get("model", default_model.get(backend))
    if not isinstance(model, str) or not model:
        raise SpecError(
            f"{source}: key 'model' is required: a built-in model name or a path to an .onnx file"
        )
    precision = choice("precision", "fp32", PRECISIONS, "precision")
    batch = integer("batch_size", 1, "must be a positive integer", least=1)
    mode = choice("mode", "latency", MODES, "mode")
    inflight = integer("inflight", 2, "must be a positive integer (requests in flight)", least=1)
    if mode == "latency":
        inflight = 1  # by definition: one request at a time, synchronized per iteration
    groups = {}
    for group in MAPPING_KEYS:
        values = d.get(group) or {}
        if not isinstance(values, Mapping):
            raise bad(group, values, "must be a mapping of name -> value")
        for k, v in values.items():
            if not isinstance(v, (str, int, float, bool, type(None))):
                raise bad(f"{group}.{k}", v, "must be a scalar (string, number, boolean)")
        groups[group] = tuple(sorted((str(k), v) for k, v in values.items()))
    timeout = d.get("timeout_s", 600)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise bad("timeout_s", timeout, "must be a positive number of seconds")
    seed = integer("seed", 0, "must be an integer")
    machine = d.get("machine")
    if machine is not None and (not isinstance(machine, str) or not machine.strip()):
        raise bad("machine", machine, "must be the name of a Dask worker (a non-empty string)")
    return RunConfig(
        study=study,
        model=model,
        pipeline=pipeline,
        backend=backend,
        precision=precision,
        batch_size=batch,
        mode=mode,
        inflight=inflight,
        input_shapes=_shapes(d.get("input_shapes"), source),
        options=groups["options"],
        pipeline_options=groups["pipeline_options"],
        warmup=_policy(d.get("warmup", {"iterations": 10}), "warmup", WARMUP_KEYS, source),
        measure=_policy(d.get("measure", {"iterations": 200}), "measure", MEASURE_KEYS, source),
        timeout_s=float(timeout),
        seed=seed,
        machine=machine,
    )


def _shapes(value: Any, source: str) -> tuple[tuple[str, tuple[int | str, ...]], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise SpecError(
            f"{source}: key 'input_shapes': expected a mapping input -> list of dims, got {_kind(value)}"
        )
    out = []
    for name, dims in value.items():
        if (
            not isinstance(dims, list)
            or not dims
            or not all(
                (isinstance(x, int) and not isinstance(x, bool) and x > 0) or isinstance(x, str)
                for x in dims
            )
        ):
            raise SpecError(
                f"{source}: key {quote(f'input_shapes.{name}')}: {quote(dims)} must be a list of positive "
                "integers or names (N = batch size)"
            )
        out.append((str(name), tuple(dims)))
    return tuple(sorted(out))


def _policy(value: Any, key: str, allowed: tuple[str, ...], source: str) -> Policy:
    example = (
        "{iterations: 10} or {seconds: 1.0}"
        if key == "warmup"
        else ("{iterations: 200}, {seconds: 5} or {target_rel_ci: 0.01, max_seconds: 30}")
    )
    if not isinstance(value, Mapping) or not value:
        raise SpecError(
            f"{source}: key {quote(key)}: {quote(value)} is not a policy; expected {example}"
        )
    for k, v in value.items():
        if k not in allowed:
            raise SpecError(
                f"{source}: key {quote(f'{key}.{k}')}: unknown; valid: {', '.join(allowed)}"
            )
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise SpecError(
                f"{source}: key {quote(f'{key}.{k}')}: {quote(v)} must be a non-negative number"
            )
    stops = [k for k in ("iterations", "seconds", "target_rel_ci") if k in value]
    if len(stops) != 1:
        raise SpecError(
            f"{source}: key {quote(key)}: give exactly one of iterations, seconds"
            f"{', target_rel_ci' if key == 'measure' else ''}; e.g. {example}"
        )
    if "iterations" in value and not isinstance(value["iterations"], int):
        raise SpecError(
            f"{source}: key '{key}.iterations': {quote(value['iterations'])} must be an integer"
        )
    if key == "measure":
        if value.get("iterations", 1) < 1 or value.get("seconds", 1) <= 0:
            raise SpecError(
                f"{source}: key 'measure': {quote(dict(value))} must measure at least one iteration"
            )
        if "target_rel_ci" in value and not 0 < value["target_rel_ci"] < 1:
            raise SpecError(
                f"{source}: key 'measure.target_rel_ci': {quote(value['target_rel_ci'])} must be between 0 and 1 (0.01 = 1%)"
            )
        if "max_seconds" in value and "target_rel_ci" not in value:
            raise SpecError(f"{source}: key 'measure.max_seconds' only bounds target_rel_ci")
    return Policy(
        iterations=value.get("iterations"),
        seconds=float(value["seconds"]) if "seconds" in value else None,
        target_rel_ci=value.get("target_rel_ci"),
        max_seconds=float(value.get("max_seconds", 30.0)) if "target_rel_ci" in value else None,
        min_iterations=value.get("min_iterations"),
    )


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
