"""dvc.yaml's code deps are exactly each stage's import closure, so a code change reruns
exactly the stages whose code changed (pipeline/code_deps.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.code_deps import missing_deps, stage_closure, stage_code_deps
from stages import STAGE_MODULES, STAGE_NAMES

REPO = Path(__file__).resolve().parents[1]
DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text())
STAGES = list(DVC_YAML["stages"])


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_yaml_lists_every_file_the_stage_imports(stage: str) -> None:
    closure = stage_closure(REPO, stage)
    assert f"stages/{STAGE_MODULES[stage]}.py" in closure
    missing = missing_deps(closure, stage_code_deps(DVC_YAML)[stage])
    assert missing == [], f"dvc.yaml stage {stage!r} misses code deps {missing}: python -m pipeline code-deps --write"


@pytest.mark.parametrize("stage", STAGES)
def test_dvc_yaml_lists_no_code_the_stage_does_not_import(stage: str) -> None:
    extra = sorted(set(stage_code_deps(DVC_YAML)[stage]) - stage_closure(REPO, stage))
    assert extra == [], f"dvc.yaml stage {stage!r} lists code it never imports: {extra}"


def test_one_stage_list() -> None:
    from pipeline.stage_table import STAGES as FLOWS

    assert tuple(DVC_YAML["stages"]) == STAGE_NAMES == tuple(FLOWS)


def test_a_removed_dep_is_reported() -> None:
    broken = copy.deepcopy(DVC_YAML)
    broken["stages"]["train"]["deps"].remove("lacp/points/formats.py")
    closure = stage_closure(REPO, "train")
    assert missing_deps(closure, stage_code_deps(broken)["train"]) == ["lacp/points/formats.py"]


def test_closure_follows_function_level_and_relative_imports_and_skips_type_checking(tmp_path: Path) -> None:
    (tmp_path / "stages").mkdir()
    (tmp_path / "lacp").mkdir()
    (tmp_path / "core").mkdir()
    for pkg in ("stages", "lacp", "core"):
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "stages" / "demo.py").write_text(
        "from typing import TYPE_CHECKING\nimport numpy\n"
        "if TYPE_CHECKING:\n    from core import typing_only\n"
        "def f():\n    from lacp import late\n    return late\n"
    )
    (tmp_path / "lacp" / "late.py").write_text("from . import helper\n")
    (tmp_path / "lacp" / "helper.py").write_text("")
    (tmp_path / "core" / "typing_only.py").write_text("")
    assert stage_closure(tmp_path, "demo") == {
        "stages/__init__.py",
        "stages/demo.py",
        "lacp/__init__.py",
        "lacp/late.py",
        "lacp/helper.py",
    }


def test_folder_dep_covers_its_files() -> None:
    assert missing_deps(["sources/a.py", "lacp/b.py"], ["sources/"]) == ["lacp/b.py"]


def test_write_restores_a_removed_dep_and_keeps_everything_else(tmp_path: Path) -> None:
    from pipeline.code_deps import write_code_deps

    original = (REPO / "dvc.yaml").read_text()
    broken = tmp_path / "dvc.yaml"
    broken.write_text(original.replace("      - lacp/points/formats.py\n", "", 1))
    assert broken.read_text() != original
    write_code_deps(REPO, broken)
    assert broken.read_text() == original


def test_a_write_failing_half_way_leaves_dvc_yaml_as_it_was(tmp_path: Path) -> None:
    from tests.test_reliability_faults import run_with_file_size_limit

    stale = tmp_path / "dvc.yaml"
    stale.write_text((REPO / "dvc.yaml").read_text().replace("      - lacp/points/formats.py\n", "", 1))
    before = stale.read_bytes()
    result = run_with_file_size_limit(
        "from pathlib import Path\nfrom pipeline.code_deps import write_code_deps",
        f"write_code_deps(Path({str(REPO)!r}), Path({str(stale)!r}))",
        file_size_limit=len(before) // 2,
    )  # a full disk half-way through
    assert result.returncode == 1 and f"File too large: '{stale}'" in result.stderr, result.stderr[-2000:]
    assert stale.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["dvc.yaml"]  # no temporary file left
