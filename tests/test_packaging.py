"""Project files that must agree with each other."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    wanted |= {_name(r) for r in project["optional-dependencies"]["openvino"]}
    wanted |= {_name(r) for r in project["optional-dependencies"]["torch"]}
    wanted |= {_name(r) for r in project["optional-dependencies"]["dask"]}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = {_name(r) for r in pip_list if not r.startswith("-e")}
    assert listed == wanted


def test_readme_opens_with_the_two_commands():
    text = (REPO / "README.md").read_text()
    first_block = text.split("```")[1]
    assert [line.strip() for line in first_block.strip().splitlines()[1:]] == [
        "make demo",
        "make test",
    ]


def test_ci_runs_make_test():
    assert "make test" in (REPO / ".ci" / "run").read_text()
