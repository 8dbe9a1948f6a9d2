"""Which project source files a stage's result depends on: the import closure of its module.

DVC reruns a stage when one of its `deps` changes, so every file of the project that a
stage's code imports, directly or through other project modules, at module level or inside
a function, must be a dep. `stage_closure` computes that set from the source (with `ast`,
nothing is imported); `missing_deps` compares it with dvc.yaml, and
tests/test_pipeline_code_deps.py fails when a stage misses one.

Why a computed check instead of whole package folders as deps: folders would rerun
training for a change to a plot, and extraction (minutes per video on real data) for a
change anywhere in `features/`. The closure reruns exactly the stages whose code changed.
`pipeline/` is not part of any closure: it decides how stages run, never what they compute.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["PROJECT_PACKAGES", "missing_deps", "module_file", "stage_closure", "stage_code_deps", "write_code_deps"]

PROJECT_PACKAGES = ("core", "features", "lacp", "sources", "stages")
"""Top-level packages whose files count as code deps (`pipeline` only orchestrates)."""


def module_file(root: Path, module: str) -> Path | None:
    """The source file of a project module (`a.b` -> a/b.py or a/b/__init__.py), if any."""
    parts = module.split(".")
    if parts[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(path: Path, module: str) -> set[str]:
    """Every module named by an import statement anywhere in `path` (including `from a import b`
    as both `a` and `a.b`, since b may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _executed_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _executed_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """All nodes of `tree` except the bodies of `if TYPE_CHECKING:` blocks (never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def stage_closure(root: Path, stage: str) -> set[str]:
    """Project files (POSIX paths relative to `root`) that `stages/<stage>.py` imports, transitively.

    A package's `__init__.py` is included whenever one of its modules is (Python runs it).
    """
    root = Path(root)
    todo = [f"stages.{stage}"]
    seen: dict[str, Path] = {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        path = module_file(root, module)
        if path is None:
            continue
        seen[module] = path
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
        todo.extend(_imported_modules(path, module))
    return {p.relative_to(root).as_posix() for p in seen.values()}


def missing_deps(closure: Iterable[str], deps: Iterable[str]) -> list[str]:
    """Files of `closure` that no dep covers (a dep covers a file equal to it or under it)."""
    folders = [d.rstrip("/") + "/" for d in deps]
    exact = set(d.rstrip("/") for d in deps)
    return sorted(f for f in closure if f not in exact and not any(f.startswith(d) for d in folders))


def stage_code_deps(dvc_yaml: Mapping) -> dict[str, list[str]]:
    """The code deps (paths inside the project packages) of every stage of a parsed dvc.yaml."""
    out = {}
    for name, stage in dvc_yaml["stages"].items():
        out[name] = [d for d in stage.get("deps", []) if isinstance(d, str) and d.split("/")[0] in PROJECT_PACKAGES]
    return out


def write_code_deps(root: Path, dvc_yaml: Path) -> dict[str, list[str]]:
    """Rewrite the code deps of every stage in `dvc_yaml` to its import closure.

    Only the `deps:` lines naming files of `PROJECT_PACKAGES` are replaced (sorted, after the
    stage's data deps); comments and every other line stay as they are.

    Returns:
        stage -> the code deps written.
    """
    lines = Path(dvc_yaml).read_text().split("\n")
    out: list[str] = []
    written: dict[str, list[str]] = {}
    stage, in_deps = None, False
    for line in lines:
        header = re.match(r"^  (\w+):\s*$", line)
        if header:
            stage = header.group(1)
        if in_deps:
            item = re.match(r"^      - (\S+)\s*$", line)
            if item:
                if item.group(1).split("/")[0] not in PROJECT_PACKAGES:
                    out.append(line)
                continue
            written[stage] = sorted(stage_closure(root, stage))
            out.extend(f"      - {f}" for f in written[stage])
            in_deps = False
        if re.match(r"^    deps:\s*$", line):
            in_deps = True
        out.append(line)
    Path(dvc_yaml).write_text("\n".join(out))
    return written
