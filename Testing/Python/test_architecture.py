"""The layout keeps its promises: layers import only downwards, no import cycle, no oversized file.

Read from the source (every ``import`` statement, function-level ones included), so a lazy import
that goes the wrong way counts like a top-level one.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Set

import pytest

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "LowLightDenoiseLib"
PACKAGE = "LowLightDenoiseLib"

#: each library module's layer (by its first name under the package); a module may import only its own
#: layer and the ones below it. Front ends sit on top, the core (arrays in physical units) at the bottom.
LAYERS = [
    {"errors", "progress", "resources", "volume", "options", "files", "memory", "tables", "vst", "normalize"},  # foundations
    {"io", "noise", "degrade", "metrics"},  # images in physical units
    {"models"},  # networks and how they run (no method)
    {"registry"},  # the catalogue (no method)
    {"methods"},  # every method behind one interface
    {"pipeline"},  # the engine
    {"evaluation", "figures"},  # methods over volumes -> rows; figures of them
    {"jobs"},  # a job in a child process: description, protocol, launcher (no MRML)
    {"mrml", "bench", "cli", "batch", "__main__"},  # front ends
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> Set[str]:
    """Modules of the package that ``path`` imports, as dotted names."""
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # ``from . import registry``
    return found


def _graph() -> Dict[str, Set[str]]:
    modules = {_module_name(p): p for p in LIB.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_library_module_has_a_layer():
    tops = {_top(m) for m in _graph()} - {""}
    assert tops <= set(LAYER_OF), f"modules without a layer: {sorted(tops - set(LAYER_OF))}"


def test_layers_import_only_their_own_layer_or_lower():
    wrong = []
    for module, targets in _graph().items():
        if not _top(module):
            continue
        for target in targets:
            if _top(target) and LAYER_OF[_top(target)] > LAYER_OF[_top(module)]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports going up the layers: " + ", ".join(sorted(wrong))


def test_there_is_no_import_cycle():
    graph = _graph()
    # a package's __init__ re-exporting its submodules is not a cycle of behaviour: ignore package -> child
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in graph.items()}
    state: Dict[str, int] = {}
    stack: list = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("folder", ["LowLightDenoiseLib", "LowLightDenoise", "train", "examples"])
def test_no_source_file_is_over_500_lines(folder):
    long = {str(p.relative_to(REPO)): n for p in (REPO / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_the_library_reads_nothing_of_the_repository_around_it():
    """From an installed wheel there is no Testing/, train/ or benchmarks/ folder beside the package."""
    offenders = []
    for path in LIB.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for needle in ("parents[1]", "parents[2]", '"Testing"', '"train"', "/root/", "lowlight-devdata"):
            if needle in text:
                offenders.append(f"{path.relative_to(REPO)}: {needle}")
    assert not offenders, offenders


def test_the_wheel_ships_every_library_package():
    """pyproject.toml lists packages by hand: a new folder of the library must be listed, or pip drops it."""
    import re

    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    listed = set(re.findall(r'"(LowLightDenoiseLib(?:\.\w+)?)"', text.split("packages =", 1)[1].split("\n", 1)[0]))
    present = {_module_name(p.parent / "__init__.py") for p in LIB.rglob("__init__.py")}
    assert present <= listed, f"packages missing from pyproject.toml: {sorted(present - listed)}"
