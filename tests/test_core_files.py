"""Tests of core.files: the stale-temporary sweep touches only the caller's own targets."""

from __future__ import annotations

from pathlib import Path

from core.files import atomic_path, remove_stale_tmp


def _leftover(folder: Path, target: str) -> str:
    """The temporary file a killed `atomic_path` write of `target` leaves: its real name."""
    with atomic_path(folder / target) as tmp:
        name = tmp.name
    (folder / name).write_bytes(b"killed half-way")
    return name


def test_remove_stale_tmp_removes_only_the_given_targets_temporaries(tmp_path: Path) -> None:
    own = _leftover(tmp_path, "features.h5")
    foreign = [_leftover(tmp_path, name) for name in ("pseudo_labels.h5", "features-extra.h5", "features.json")]
    assert remove_stale_tmp(tmp_path, targets=("features.h5",)) == [tmp_path / own]
    left = {"features.h5", "pseudo_labels.h5", "features-extra.h5", "features.json", *foreign}
    assert {p.name for p in tmp_path.iterdir()} == left


def test_a_star_stem_sweeps_every_target_with_that_suffix(tmp_path: Path) -> None:
    videos = [_leftover(tmp_path, name) for name in ("v-1.mp4", "v_2.mp4")]
    sidecar = _leftover(tmp_path, "v-1.json")
    (tmp_path / ".tmp-notes.mp4").write_bytes(b"")  # not a name atomic_path makes
    assert remove_stale_tmp(tmp_path, targets=("*.mp4",)) == sorted(tmp_path / v for v in videos)
    assert remove_stale_tmp(tmp_path, targets=("*.mp4", "*.json")) == [tmp_path / sidecar]
    assert (tmp_path / ".tmp-notes.mp4").exists()
