"""What a stage's result depends on besides its params: its code and the user's input files.

Code: the import closure of the stage's module.

DVC reruns a stage when one of its `deps` changes, so every file of the project that a
stage's code imports, directly or through other project modules, at module level or inside
a function, must be a dep. `stage_closure` computes that set from the source (with `ast`,
nothing is imported); `missing_deps` compares it with dvc.yaml, and
tests/test_pipeline_code_deps.py fails when a stage misses one.

Why a computed check instead of whole package folders as deps: folders would rerun
training for a change to a plot, and extraction (minutes per video on real data) for a
change anywhere in `features/`. The closure reruns exactly the stages whose code changed.
`pipeline/` is not part of any closure: it decides how stages run, never what they compute.

Inputs: the files and folders the params name (`input_deps`: the directory source's videos,
gt.json and fps table; a points file; SF-Net click files). DVC cannot take a dependency from
a params value that may be empty or a list, so `write_code_deps` writes them into dvc.yaml
as plain deps from the current params (`python -m pipeline code-deps --write`), and
`check_input_deps` refuses to run a stage whose params name an input dvc.yaml does not list,
so an edited ground truth can never leave stale metrics behind. DVC hashes a video folder
once and then only re-hashes files whose size or mtime changed (its state database).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from core.files import write_bytes_atomic
from stages import STAGE_MODULES

__all__ = [
    "PROJECT_PACKAGES",
    "check_input_deps",
    "input_deps",
    "missing_deps",
    "module_file",
    "stage_closure",
    "stage_code_deps",
    "write_code_deps",
]

PROJECT_PACKAGES = ("core", "detector", "features", "lacp", "sources", "stages")
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
    """Project files (POSIX paths relative to `root`) that the stage's module imports, transitively:
    `stages/<module>.py` with the module `stages.STAGE_MODULES` names (the stage's own, or the one it
    reruns on other paths, as evaluate_selftrain runs evaluate's).

    A package's `__init__.py` is included whenever one of its modules is (Python runs it).
    """
    root = Path(root)
    todo = [f"stages.{STAGE_MODULES.get(stage, stage)}"]
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
    exact = {d.rstrip("/") for d in deps}
    return sorted(f for f in closure if f not in exact and not any(f.startswith(d) for d in folders))


def input_deps(params: Any) -> dict[str, list[str]]:
    """The user's input paths each stage reads, as the params name them (`pipeline.params.Params`)."""
    out: dict[str, list[str]] = {}
    d = params.dataset.directory
    if params.dataset.source == "directory":
        out["prepare"] = [p for p in (d.video_dir, d.gt_json, d.fps_json) if p]
    pts = params.points
    if pts.distribution == "file" and pts.file:
        out["points"] = [pts.file]
    elif pts.distribution == "manual" and pts.manual_files:
        out["points"] = list(pts.manual_files)
    return out


def _is_data_dep(dep: str) -> bool:
    """A dep that is neither code nor a user input: an artifact path `${paths....}`."""
    return dep.startswith("${")


def check_input_deps(stage: str, params: Any, dvc_yaml: Path) -> None:
    """Refuse to run `stage` when its params name an input that `dvc_yaml` does not track.

    Raises:
        ValueError: naming the input, the params key's stage and the fix.
    """
    import yaml

    wanted = input_deps(params).get(stage, [])
    if not wanted:
        return
    listed = set(yaml.safe_load(Path(dvc_yaml).read_text())["stages"][stage].get("deps", []))
    untracked = [p for p in wanted if p not in listed]
    if untracked:
        raise ValueError(
            f"{dvc_yaml}: stage {stage!r} reads {untracked} (named in the params) but does not list them as deps, "
            "so DVC would not rerun it when they change: run `python -m pipeline code-deps --write` and commit dvc.yaml"
        )


def stage_code_deps(dvc_yaml: Mapping) -> dict[str, list[str]]:
    """The code deps (paths inside the project packages) of every stage of a parsed dvc.yaml."""
    out = {}
    for name, stage in dvc_yaml["stages"].items():
        out[name] = [d for d in stage.get("deps", []) if isinstance(d, str) and d.split("/")[0] in PROJECT_PACKAGES]
    return out


def write_code_deps(root: Path, dvc_yaml: Path, inputs: Mapping[str, list[str]] | None = None) -> dict[str, list[str]]:
    """Rewrite the deps of every stage in `dvc_yaml`: its artifact deps, then the user inputs
    (`inputs`, e.g. `input_deps(params)`), then its import closure.

    Only `deps:` lines that are not artifact paths (`${...}`) are replaced; comments and every
    other line stay as they are.

    Returns:
        stage -> the code and input deps written.
    """
    inputs = inputs or {}
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
                if _is_data_dep(item.group(1)):
                    out.append(line)
                continue
            written[stage] = list(inputs.get(stage, [])) + sorted(stage_closure(root, stage))
            out.extend(f"      - {f}" for f in written[stage])
            in_deps = False
        if re.match(r"^    deps:\s*$", line):
            in_deps = True
        out.append(line)
    write_bytes_atomic(dvc_yaml, "\n".join(out).encode())  # a failed write leaves dvc.yaml as it was
    return written
