"""Imports run one way: no cycle in src/perflab, and no module imports from a layer above it.

The layer list is the one in docs/design-notes.md (section Layout), read from there so that the
document and this check cannot drift apart.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "perflab"
NOTES = ROOT / "docs" / "design-notes.md"


def layers() -> list[tuple[str, list[str]]]:
    text = NOTES.read_text()
    block = re.search(r"<!-- import-layers -->(.*?)<!-- /import-layers -->", text, re.DOTALL)
    assert block, f"{NOTES} has no import-layers list"
    out = []
    for line in block.group(1).strip().splitlines():
        m = re.fullmatch(r"\d+\. ([^:]+): (.+)", line.strip())
        assert m, f"unreadable layer line {line!r}"
        out.append((m.group(1), [n.strip() for n in m.group(2).split(",")]))
    return out


def module_name(path: Path) -> str:
    parts = ["perflab", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports_of(path: Path) -> set[str]:
    """The perflab modules a file imports, at the top or inside functions; type-only imports and
    the root package's `__version__` left out."""
    found: set[str] = set()
    stack: list[ast.AST] = [ast.parse(path.read_text())]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, ast.Import):
                found |= {a.name for a in child.names if a.name.split(".")[0] == "perflab"}
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module.split(".")[0] != "perflab":
                    continue
                for alias in child.names:
                    sub = f"{child.module}.{alias.name}"
                    if sub in MODULES:
                        found.add(sub)
                    elif not (child.module == "perflab" and alias.name == "__version__"):
                        found.add(child.module)
            stack.append(child)
    return found


def graph() -> dict[str, set[str]]:
    return {name: imports_of(path) - {name} for name, path in MODULES.items()}


def layer_of(module: str, table: list[tuple[str, list[str]]]) -> int | None:
    """Index of the layer naming `module`; an exact name wins over a `pkg.*` pattern, and a
    longer pattern over a shorter one."""
    best: tuple[int, int] | None = None  # (specificity, layer)
    short = "perflab" if module == "perflab" else module.removeprefix("perflab.")
    for i, (_, names) in enumerate(table):
        for name in names:
            if name == short:
                rank = (10_000, i)
            elif name.endswith(".*") and (short == name[:-2] or short.startswith(name[:-2] + ".")):
                rank = (len(name), i)
            else:
                continue
            best = rank if best is None or rank > best else best
    return None if best is None else best[1]


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_module_has_a_layer():
    table = layers()
    unplaced = [m for m in MODULES if layer_of(m, table) is None]
    assert not unplaced, f"modules missing from the layer list in {NOTES.name}: {unplaced}"


def test_no_module_imports_from_a_layer_above():
    table = layers()
    wrong = []
    for module, targets in graph().items():
        own = layer_of(module, table)
        for target in sorted(targets):
            theirs = layer_of(target, table)
            if own is not None and theirs is not None and theirs > own:
                wrong.append(f"{module} ({table[own][0]}) imports {target} ({table[theirs][0]})")
    assert not wrong, "imports that run the wrong way:\n" + "\n".join(wrong)


def test_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# The checks themselves must be able to fail.


def test_the_walker_sees_lazy_imports_and_skips_type_only_ones(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from perflab import __version__, store\n"
        "if TYPE_CHECKING:\n"
        "    from perflab.spec import RunConfig\n"
        "def f():\n"
        "    from perflab.backends.ort import OrtBackend\n"
        "    import perflab.cuda\n"
    )
    assert imports_of(source) == {"perflab.store", "perflab.backends.ort", "perflab.cuda"}


def test_layer_lookup_prefers_the_exact_name():
    table = [("low", ["backends.registry"]), ("high", ["backends.*"])]
    assert layer_of("perflab.backends.registry", table) == 0
    assert layer_of("perflab.backends.ort", table) == 1
    assert layer_of("perflab.backends", table) == 1
    assert layer_of("perflab.store", table) is None


@pytest.mark.parametrize(
    ("edges", "cyclic"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, False),
    ],
)
def test_find_cycle(edges, cyclic):
    assert (find_cycle(edges) is not None) == cyclic
