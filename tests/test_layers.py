"""The package's import graph read from the source (AST, every import, also those inside functions): no cycle, and
no import from a layer to a later one; the order is the `Layers:` line of stylegan_blend/__init__.py's docstring."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "stylegan_blend"
FRONT_DOOR = ("__init__", "__main__")  # the package root's own modules: the last layer, with api.py


def layer_order() -> dict[str, int]:
    """{top-level name: its layer's index}, from the docstring: `a -> b, c -> d` puts b and c on one layer."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    (line,) = [line for line in doc.splitlines() if line.startswith("Layers:")]
    steps = line.removeprefix("Layers:").split("->")
    return {name.strip(): i for i, step in enumerate(steps) for name in step.split(",")}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The stylegan_blend modules `name` imports by name (`from pkg import submodule` counts the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "stylegan_blend"}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] != "stylegan_blend":
                continue
            for alias in node.names:
                out.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target)
    return out


def layer(module: str, order: dict[str, int]) -> str:
    parts = module.split(".")
    return "api" if len(parts) == 1 or parts[1] in FRONT_DOOR else parts[1]


def test_every_package_and_module_has_a_layer():
    order = layer_order()
    tops = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert sorted(tops - set(FRONT_DOOR) - set(order)) == []  # a new top-level module must be placed in the order
    assert sorted(set(order) - tops) == []  # and the docstring names nothing that is gone


def test_no_import_from_a_layer_to_a_later_one():
    order, known = layer_order(), modules()
    upward = sorted(
        f"{name} ({layer(name, order)}) imports {dep} ({layer(dep, order)})"
        for name, path in known.items()
        for dep in imports(name, path, known)
        if order[layer(dep, order)] > order[layer(name, order)]
    )
    assert upward == []


def test_import_graph_has_no_cycle():
    known = modules()
    graph = {name: imports(name, path, known) & set(known) - {name} for name, path in known.items()}
    state, stack, cycles = {}, [], []

    def visit(node):  # depth-first; a grey node met again closes a cycle
        state[node] = "grey"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "grey":
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "black"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_the_checker_sees_upward_arrows_and_cycles(tmp_path):
    """The walk itself, on a hand-made package: a relative import inside a function still counts."""
    (tmp_path / "stylegan_blend" / "low").mkdir(parents=True)
    (tmp_path / "stylegan_blend" / "low" / "__init__.py").write_text("def f():\n    from ..high import x\n")
    known = {
        "stylegan_blend.low": tmp_path / "stylegan_blend" / "low" / "__init__.py",
        "stylegan_blend.high": tmp_path / "stylegan_blend" / "high.py",
    }
    assert imports("stylegan_blend.low", known["stylegan_blend.low"], known) == {"stylegan_blend.high"}
