"""The import graph runs one way and has no cycle (docs/ARCHITECTURE.md "Packages", its dependency direction).

pipeline -> stages -> lacp / detector / sources / features -> core: a package imports only
from its own layer or a lower one, and no chain of imports among the project's modules comes
back to where it started. Every import counts, including those inside functions (a lazy
import is still a dependency). bench/ and tests/ sit above everything and are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# higher number = higher layer; a module may import its own layer or a lower one
LAYERS = {"core": 0, "features": 1, "sources": 1, "lacp": 1, "detector": 1, "stages": 2, "pipeline": 3}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """Project modules `path` imports (absolute names, packages resolved to their modules)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return {m for m in found if m.split(".")[0] in LAYERS}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for top in LAYERS for p in (ROOT / top).rglob("*.py")}
    return {name: {m for m in _imports(path, name) if m in files and m != name} for name, path in files.items()}


def test_every_import_goes_to_the_same_or_a_lower_layer():
    upward = [
        f"{src} -> {dst}"
        for src, targets in _graph().items()
        for dst in sorted(targets)
        if LAYERS[dst.split(".")[0]] > LAYERS[src.split(".")[0]]
    ]
    assert not upward, "imports against the layering (pipeline -> stages -> lacp/... -> core):\n" + "\n".join(upward)


def test_no_import_cycle():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles among: {cycles}"


def test_the_checker_sees_an_upward_import_and_a_cycle(tmp_path, monkeypatch):
    """The two checks can fail: a fake tree with an upward import and a cycle trips both."""
    for top, body in {"core": "import stages.a\n", "stages": "from stages import b\n"}.items():
        (tmp_path / top).mkdir()
        (tmp_path / top / "__init__.py").write_text("")
        (tmp_path / top / "a.py").write_text(body)
    (tmp_path / "stages" / "b.py").write_text("import stages.a\n")
    for top in set(LAYERS) - {"core", "stages"}:
        (tmp_path / top).mkdir()
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    graph = _graph()
    assert "stages.a" in graph["core.a"]
    assert "stages.b" in graph["stages.a"] and "stages.a" in graph["stages.b"]
    try:
        test_every_import_goes_to_the_same_or_a_lower_layer()
    except AssertionError as err:
        assert "core.a -> stages.a" in str(err)
    else:
        raise AssertionError("the upward import was not seen")
    try:
        test_no_import_cycle()
    except AssertionError as err:
        assert "stages.a" in str(err) and "stages.b" in str(err)
    else:
        raise AssertionError("the cycle was not seen")
