"""Shared fixtures for backend tests: zoo models resolved once, configs, and a setup helper."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from glob import glob
from typing import Any

import pytest

from perflab import models, pipelines
from perflab.spec import RunConfig
from perflab.timing import Recorder, SetupTimer


def _make_config(
    model: str,
    backend: str,
    precision: str = "fp32",
    batch_size: int = 1,
    pipeline: str = "raw",
    **options: Any,
) -> RunConfig:
    return RunConfig(
        study="test",
        model=model,
        pipeline=pipeline,
        backend=backend,
        precision=precision,
        batch_size=batch_size,
        options=tuple(sorted(options.items())),
    )


@pytest.fixture
def make_config() -> Callable[..., RunConfig]:
    """make_config(model, backend, precision="fp32", batch_size=1, pipeline="raw", **options)."""
    return _make_config


@pytest.fixture
def gpu() -> None:
    """Skips the test unless an NVIDIA GPU and driver are visible (for @pytest.mark.gpu tests)."""
    if not (glob("/dev/nvidia[0-9]*") or shutil.which("nvidia-smi")):
        pytest.skip("needs an NVIDIA GPU and driver")


@pytest.fixture(scope="session")
def resolved() -> Callable[[str, int], models.ModelInfo]:
    """resolve(name, batch) with the results kept for the whole session."""
    cache: dict[tuple[str, int], models.ModelInfo] = {}

    def get(name: str, batch_size: int = 1) -> models.ModelInfo:
        key = (name, batch_size)
        if key not in cache:
            cache[key] = models.resolve(name, batch_size=batch_size)
        return cache[key]

    return get


@pytest.fixture
def set_up(resolved):
    """Build a backend for a config, set it up, and return (backend, model, pipeline, timer);
    closes every backend it made at teardown."""
    from perflab.backends.base import create

    made = []

    def build(config: RunConfig):
        model = resolved(config.model, config.batch_size)
        pipeline = pipelines.create(
            config.pipeline, model.inputs, batch_size=config.batch_size, seed=config.seed
        )
        backend = create(config)
        made.append(backend)
        timer = SetupTimer()
        backend.setup(model, pipeline, timer)
        return backend, model, pipeline, timer

    yield build
    for backend in made:
        backend.close()


@pytest.fixture
def run_iterations() -> Callable[..., tuple[Recorder, dict]]:
    """run_iterations(backend, pipeline, n, batch_size): n iterations of the backend's engine
    stages on one preprocessed batch; returns the Recorder and the last outputs."""

    def run(backend, pipeline, n: int, batch_size: int) -> tuple[Recorder, dict]:
        rec = Recorder(batch_size)
        x = pipeline.preprocess(pipeline.make_inputs())
        out = {}
        for _ in range(n):
            out = backend.run(x, rec)
            rec.next_iteration()
        return rec, out

    return run


@pytest.fixture
def stage_counts() -> Callable[[Recorder], dict[str, int]]:
    """stage_counts(rec): stage name -> rows recorded."""

    def count(rec: Recorder) -> dict[str, int]:
        table = rec.table("r").to_pandas()
        return {k: int(v) for k, v in table["stage"].astype(str).value_counts().items()}

    return count


@pytest.fixture
def engines_loaded_by() -> Callable[[Sequence[str], Sequence[str]], list[str]]:
    """engines_loaded_by(modules, engines): which of the `engines` packages a fresh interpreter
    holds after importing `modules` (a module that must stay light holds none)."""

    def loaded(modules: Sequence[str], engines: Sequence[str]) -> list[str]:
        code = (
            f"import sys, {', '.join(modules)}; "
            f"print([m for m in {tuple(engines)!r} if m in sys.modules])"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        return ast.literal_eval(out.stdout.strip())

    return loaded
