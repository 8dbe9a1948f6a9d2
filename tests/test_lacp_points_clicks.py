"""lacp.points.clicks on the published SF-Net clicks of GTEA and BEOID: each annotator's clicks
land inside the training instances they label (counts measured on the files, asserted exactly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lacp.points.clicks import assign_clicks
from lacp.points.instances import train_instances
from tests.shared_data import BEOID, GTEA, click_files, needs_beoid, needs_gtea, sfnet_annotations

# per annotator (manual_<NAME>1..4.txt): clicks on training videos, assigned to an instance of their
# class, inside it, clicks naming a class absent from the video, training instances left unclicked
GTEA_CLICKS = [(369, 369, 366, 0, 0), (367, 367, 361, 0, 4), (377, 377, 367, 0, 0), (367, 367, 366, 0, 0)]
BEOID_CLICKS = [(589, 587, 572, 2, 21), (602, 594, 590, 8, 5), (604, 595, 578, 9, 19), (599, 592, 575, 7, 11)]
# per annotator: the kept point (one per clicked instance) inside [start_frame, stop_frame] of its instance
GTEA_KEPT_INSIDE = [364, 361, 363, 366]
BEOID_KEPT_INSIDE = [563, 589, 567, 571]


def _check_annotator(
    folder: Path, annotator: int, expected: tuple[int, int, int, int, int], instances: int, kept_inside: int
) -> float:
    ann = sfnet_annotations(folder)
    inst = train_instances(ann)
    assert len(inst) == instances
    files = click_files(folder)
    assert len(files) == 4
    frames, clicked, stats, _ = assign_clicks(
        inst, ann, np.random.default_rng(0), manual_files=files, annotator=annotator
    )
    clicks, assigned, inside, absent, unclicked = expected
    assert (
        stats.clicks,
        stats.assigned,
        stats.inside,
        stats.absent_class_clicks,
        stats.unclicked_instances,
    ) == expected
    assert stats.outside == assigned - inside and stats.inside_share == pytest.approx(inside / assigned)
    assert stats.unknown_video_clicks == 0 and stats.test_video_clicks == 0  # the files click training videos only
    assert stats.videos_per_file == [0] * annotator + [len(set(inst.video_id))] + [0] * (3 - annotator)
    # one point per clicked instance (its nearest click), at frame rint(seconds * fps)
    assert int(clicked.sum()) == instances - unclicked
    inside_frames = (frames >= inst.start_frame) & (frames <= inst.stop_frame)
    assert int(inside_frames[clicked].sum()) == kept_inside
    return stats.inside_share


@needs_gtea
@pytest.mark.parametrize("annotator", range(4))
def test_gtea_clicks_land_inside_their_instances(annotator: int) -> None:
    share = _check_annotator(
        GTEA, annotator, GTEA_CLICKS[annotator], instances=367, kept_inside=GTEA_KEPT_INSIDE[annotator]
    )
    assert share == pytest.approx([0.9919, 0.9837, 0.9735, 0.9973][annotator], abs=1e-4)


@needs_beoid
@pytest.mark.parametrize("annotator", range(4))
def test_beoid_clicks_land_inside_their_instances(annotator: int) -> None:
    share = _check_annotator(
        BEOID, annotator, BEOID_CLICKS[annotator], instances=594, kept_inside=BEOID_KEPT_INSIDE[annotator]
    )
    assert share == pytest.approx([0.9744, 0.9933, 0.9714, 0.9713][annotator], abs=1e-4)


@needs_gtea
def test_random_annotator_is_seeded_and_spreads_over_the_four_files() -> None:
    ann = sfnet_annotations(GTEA)
    inst = train_instances(ann)
    runs = [
        assign_clicks(inst, ann, np.random.default_rng(seed), manual_files=click_files(GTEA), annotator="random")
        for seed in (7, 7)
    ]
    (frames_a, clicked_a, stats_a, _), (frames_b, clicked_b, stats_b, _) = runs
    assert np.array_equal(frames_a, frames_b) and np.array_equal(clicked_a, clicked_b) and stats_a == stats_b
    assert sum(stats_a.videos_per_file) == 21 and sum(n > 0 for n in stats_a.videos_per_file) >= 3
