"""bench.selftrain: one trained detector scored under several post-processing settings."""

from __future__ import annotations

import json

import pydantic
import pytest

from bench.selftrain import recorded_as
from bench.selftrain_postprocess import parse_value


def test_recorded_as_copies_the_folder_only_when_its_record_differs(tmp_path):
    """A folder recording lacp_proposals true and voting 0.6 is returned as it is for those
    settings; for voting 0 a copy beside it records voting 0 and keeps every other field and file;
    a second call rewrites that copy rather than stacking suffixes."""
    folder = tmp_path / "selftrain"
    folder.mkdir()
    meta = {"kind": "selftrain", "inference": {"lacp_proposals": True, "voting_tiou": 0.6, "nms_sigma": 0.5}}
    (folder / "model.json").write_text(json.dumps(meta))
    (folder / "model.pt").write_bytes(b"weights")
    assert recorded_as(folder, {"lacp_proposals": True, "voting_tiou": 0.6}) == folder
    copy = recorded_as(folder, {"lacp_proposals": True, "voting_tiou": 0.0})
    assert copy == tmp_path / "selftrain-lacp_proposals-true-voting_tiou-0.0"
    assert json.loads((copy / "model.json").read_text()) == {
        "kind": "selftrain",
        "inference": {"lacp_proposals": True, "voting_tiou": 0.0, "nms_sigma": 0.5},
    }
    assert (copy / "model.pt").read_bytes() == b"weights"
    assert json.loads((folder / "model.json").read_text()) == meta  # the trained folder is untouched
    (copy / "stale").write_text("from an earlier call")
    assert recorded_as(folder, {"lacp_proposals": True, "voting_tiou": 0.0}) == copy
    assert not (copy / "stale").exists()


def test_a_sweep_reads_each_value_as_the_swept_field_takes_it():
    """`bench.selftrain_postprocess --key K --values ...`: numbers for a number, true/false for a
    flag, and a value the field refuses is refused naming the field."""
    assert parse_value("voting_tiou", "0.6") == 0.6
    assert parse_value("lacp_proposals", "true") is True
    assert parse_value("lacp_proposals", " false") is False
    with pytest.raises(pydantic.ValidationError, match="voting_tiou"):
        parse_value("voting_tiou", "2")
