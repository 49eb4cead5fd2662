"""Stand-ins for CuPy, TensorRT and NVML, shared by the tests of perflab.cuda, the GPU backends
and GPU telemetry.

No GPU here: with these fakes the GPU code paths (buffers, streams, events, CUDA graphs, engine
build and inference) run on the CPU. Device time is a clock per stream that each copy and each
engine call advances by a fixed amount, so stage arithmetic is checked to the nanosecond.
"""

from __future__ import annotations

import enum
import json
import types
from itertools import count
from types import SimpleNamespace
from typing import ClassVar

import numpy as np

H2D_MS, COMPUTE_MS, D2H_MS = 0.25, 1.5, 0.125  # device time of one copy / one engine call

# ---------------------------------------------------------------------------- CuPy


class FakeStream:
    _ptrs = count(0x7000)
    by_ptr: ClassVar[dict[int, FakeStream]] = {}

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        self.ptr = next(self._ptrs)
        self.t_ms = 0.0
        self.syncs = 0
        self.capture: list | None = None
        FakeStream.by_ptr[self.ptr] = self

    def synchronize(self):
        self.syncs += 1

    def begin_capture(self, mode=None):
        self.capture = []

    def end_capture(self):
        graph = FakeGraph(self.capture)
        self.capture = None
        return graph


class FakeGraph:
    """A captured CUDA graph: the work recorded during capture, replayed on each launch."""

    def __init__(self, work):
        self.work = work
        self.launches = 0

    def upload(self, stream):
        pass

    def launch(self, stream=None):
        self.launches += 1
        for fn in self.work:
            fn(stream)


class FakeEvent:
    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self.t_ms = None
        self.syncs = 0

    def record(self, stream=None):
        assert stream is not None, "events must be recorded on the run's stream"
        self.t_ms = stream.t_ms

    def synchronize(self):
        assert self.t_ms is not None
        self.syncs += 1

    @property
    def done(self):
        return self.t_ms is not None


class FakeDeviceArray:
    _ptrs = count(0x10000, 0x1000)
    by_ptr: ClassVar[dict[int, FakeDeviceArray]] = {}

    def __init__(self, shape, dtype):
        self.a = np.zeros(shape, dtype)
        self.shape, self.dtype = self.a.shape, self.a.dtype
        self.data = SimpleNamespace(ptr=next(self._ptrs))
        FakeDeviceArray.by_ptr[self.data.ptr] = self

    def set(self, host, stream=None):
        assert host.shape == self.a.shape and host.dtype == self.a.dtype
        self.a[...] = host
        stream.t_ms += H2D_MS

    def get(self, stream=None, order="C", out=None, blocking=True):
        assert not blocking and out is not None, "copies back must be asynchronous, into pinned out"
        out[...] = self.a
        stream.t_ms += D2H_MS
        return out


class FakeDevice:
    def __init__(self, i=0):
        self.id = i
        self.pci_bus_id = "0000:3b:00.0"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def use(self):
        pass


def fake_cupy(cc=(8, 9)):
    """A `cupy` module: device arrays, streams, events, pinned memory; `allocs` counts the
    allocations (so a test can check that nothing is allocated in the timed loop)."""
    allocs = {"pinned": 0, "device": 0}

    def alloc_pinned_memory(n):
        allocs["pinned"] += 1
        return bytearray(n)

    def empty(shape, dtype):
        allocs["device"] += 1
        return FakeDeviceArray(shape, dtype)

    cp = types.ModuleType("cupy")
    cp.allocs = allocs
    cp.empty = empty
    cp.cuda = SimpleNamespace(
        Device=FakeDevice,
        Stream=FakeStream,
        Event=FakeEvent,
        get_elapsed_time=lambda a, b: b.t_ms - a.t_ms,
        alloc_pinned_memory=alloc_pinned_memory,
        runtime=SimpleNamespace(
            getDeviceCount=lambda: 1,
            getDeviceProperties=lambda i: {"name": b"Fake GPU", "major": cc[0], "minor": cc[1]},
        ),
    )
    return cp


# ---------------------------------------------------------------------------- NVML


class FakeNvmlSession:
    """What every fake NVML answers the same way: init, shutdown (counted) and GPU i's handle i.
    Each test's fake adds the readings it needs."""

    def __init__(self):
        self.shutdowns = 0

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, i):
        return i


# ---------------------------------------------------------------------------- TensorRT

# BuilderFlag / NetworkDefinitionCreationFlag members by TensorRT generation.
FLAGS_8 = {"FP16", "INT8", "TF32", "STRICT_TYPES"}
FLAGS_10 = {"FP16", "BF16", "INT8", "FP8", "TF32", "OBEY_PRECISION_CONSTRAINTS"}
FLAGS_11 = {"TF32", "SPARSE_WEIGHTS"}  # precision flags removed
NET_8 = {"EXPLICIT_BATCH", "EXPLICIT_PRECISION"}
NET_10 = {"EXPLICIT_BATCH", "STRONGLY_TYPED"}
NET_11 = {"STRONGLY_TYPED"}


def inspector_layer(name, kind, fmt_in, fmt_out=None):
    """One layer of an engine inspector's JSON, with one input and one output tensor."""
    return {
        "Name": name,
        "LayerType": kind,
        "Inputs": [
            {"Name": "a", "Location": "Device", "Dimensions": [1, 8], "Format/Datatype": fmt_in}
        ],
        "Outputs": [
            {
                "Name": "b",
                "Location": "Device",
                "Dimensions": [1, 8],
                "Format/Datatype": fmt_out or fmt_in,
            }
        ],
    }


def fake_tensorrt(version="10.16.1.11", *, v3=True, flags=FLAGS_10, net=NET_10, log=None):
    """A TensorRT stand-in for a model y = 2 * x: builds a JSON 'plan', runs it in numpy."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.log = log if log is not None else []
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", sorted(flags))
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", sorted(net))
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], start=0)
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE"], start=0)
    trt.ProfilingVerbosity = enum.IntEnum(
        "ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"], start=0
    )
    trt.LayerInformationFormat = enum.IntEnum(
        "LayerInformationFormat", ["ONELINE", "JSON"], start=0
    )
    trt.nptype = lambda t: np.dtype(t).type

    class ILogger:
        Severity = enum.IntEnum(
            "Severity", ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"], start=0
        )

        def __init__(self):
            pass

    class IProfiler:
        def __init__(self):
            pass

    trt.ILogger, trt.IProfiler = ILogger, IProfiler

    class Network:
        def __init__(self, flags):
            self.flags = flags
            self.inputs: list = []
            self.outputs: list = []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            name, shape = self.inputs[i]
            return SimpleNamespace(name=name, shape=shape)

    class Parser:
        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0

        def parse_from_file(self, path):
            import onnx

            g = onnx.load(path).graph
            for vi, target in ((g.input, self.network.inputs), (g.output, self.network.outputs)):
                for t in vi:
                    dims = tuple(
                        d.dim_value if d.dim_value > 0 else -1 for d in t.type.tensor_type.shape.dim
                    )
                    target.append((t.name, dims))
            return True

    trt.OnnxParser = Parser

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = [list(lo), list(opt), list(hi)]

    class TimingCache:
        def __init__(self, blob):
            self.blob = bytes(blob) or b"fresh"

        def serialize(self):
            return self.blob + b"+"

    class Config:
        def __init__(self):
            self.flags, self.cleared, self.profiles = set(), set(), []
            self.pool = {}
            self.cache = None
            self.profiling_verbosity = trt.ProfilingVerbosity.LAYER_NAMES_ONLY

        def set_flag(self, f):
            self.flags.add(f.name)

        def clear_flag(self, f):
            self.cleared.add(f.name)

        def set_memory_pool_limit(self, pool, size):
            self.pool[pool.name] = size

        def add_optimization_profile(self, p):
            self.profiles.append(p.shapes)
            return len(self.profiles) - 1

        def create_timing_cache(self, blob):
            return TimingCache(blob)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

    class Builder:
        platform_has_fast_fp16 = True

        def __init__(self, logger):
            trt.log.append("builder")

        def create_network(self, flags):
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            trt.log.append("build")
            return json.dumps(
                {
                    "inputs": network.inputs,
                    "outputs": network.outputs,
                    "flags": sorted(config.flags),
                    "strong": bool(
                        network.flags & (1 << trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
                    )
                    if "STRONGLY_TYPED" in net
                    else False,
                    "profiles": config.profiles,
                    "detailed": config.profiling_verbosity.name,
                }
            ).encode()

    trt.Builder = Builder

    class Context:
        def __init__(self, engine):
            self.engine = engine
            self.shapes, self.addresses = {}, {}
            self.profile = 0
            self.profiler = None
            self.executions = 0

        def set_optimization_profile_async(self, i, stream):
            self.profile = i
            return True

        # v3 API
        def set_input_shape(self, name, shape):
            lo, _, hi = (
                self.engine.plan["profiles"][self.profile][name]
                if self.engine.plan["profiles"]
                else (shape, shape, shape)
            )
            if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
                return False
            self.shapes[name] = tuple(shape)
            return True

        def get_tensor_shape(self, name):
            return self.shapes.get(name) or next(iter(self.shapes.values()))

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return True

        def _run(self, stream):
            x = FakeDeviceArray.by_ptr[self.addresses["x"]]
            y = FakeDeviceArray.by_ptr[self.addresses["y"]]
            y.a[...] = 2 * x.a
            stream.t_ms += COMPUTE_MS
            self.executions += 1
            if self.profiler is not None:
                self.profiler.report_layer_time("mul", 0.5)
                self.profiler.report_layer_time("Reformatting CopyNode for y", 0.01)

        def execute_async_v3(self, stream_handle):
            stream = FakeStream.by_ptr[stream_handle]
            if stream.capture is not None:
                stream.capture.append(lambda s: self._run(s))
            else:
                self._run(stream)
            return True

    class ContextV2(Context):
        def set_binding_shape(self, i, shape):
            return self.set_input_shape(self.engine.names[i % 2], shape)

        def get_binding_shape(self, i):
            return self.get_tensor_shape(self.engine.names[i % 2])

        def execute_async_v2(self, bindings, stream_handle):
            offset = 2 * self.profile
            self.addresses = {"x": bindings[offset], "y": bindings[offset + 1]}
            self._run(FakeStream.by_ptr[stream_handle])
            return True

    if v3:
        trt.IExecutionContext = type(
            "IExecutionContext",
            (),
            {
                "execute_async_v3": Context.execute_async_v3,
                "set_tensor_address": Context.set_tensor_address,
            },
        )
    else:
        trt.IExecutionContext = type(
            "IExecutionContext", (), {"execute_async_v2": ContextV2.execute_async_v2}
        )

    class Inspector:
        def __init__(self, engine):
            self.engine = engine
            self.execution_context = None

        def get_engine_information(self, fmt):
            assert self.execution_context is not None
            fp16 = "FP16" in self.engine.plan["flags"] or self.engine.strong_fp16
            fmt = "Row major linear FP16 format" if fp16 else "Row major linear FP32"
            return json.dumps(
                {"Layers": [inspector_layer("mul", "PointWiseV2", fmt)], "Bindings": ["x", "y"]}
            )

    class Engine:
        def __init__(self, plan):
            self.plan = plan
            self.names = ["x", "y"]
            self.num_io_tensors = 2
            self.num_bindings = 2 * max(1, len(plan["profiles"]))
            self.num_optimization_profiles = max(1, len(plan["profiles"]))
            self.strong_fp16 = False
            self.contexts = []

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == "x" else trt.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name):
            return "float32"

        get_binding_name = lambda self, i: self.names[i]
        binding_is_input = lambda self, i: i % 2 == 0
        get_binding_dtype = lambda self, i: "float32"

        def create_execution_context(self):
            ctx = (Context if v3 else ContextV2)(self)
            self.contexts.append(ctx)
            return ctx

        def create_engine_inspector(self):
            return Inspector(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            trt.log.append("deserialize")
            trt.engine = Engine(json.loads(bytes(blob)))
            return trt.engine

    trt.Runtime = Runtime
    return trt
