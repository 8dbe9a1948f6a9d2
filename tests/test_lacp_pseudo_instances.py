"""Pseudo instances from candidate segments and points: exact segments on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest

from lacp.pseudo_instances import Candidate, PseudoInstance, instances_from_candidates, search_candidates

U = 0.64  # seconds per snippet of the default grid


def test_search_candidates_are_the_runs_of_each_column():
    dense = np.zeros((10, 2), dtype=np.uint8)  # (T, C)
    dense[2:5, 0] = 1
    dense[7:10, 0] = 1
    dense[0, 1] = 1
    found = search_candidates(dense, snippet_seconds=U)
    assert [(k.class_index, k.start, k.end) for k in found] == [(0, 2 * U, 5 * U), (0, 7 * U, 10 * U), (1, 0.0, 1 * U)]


def test_each_point_takes_the_best_containing_candidate_of_its_class():
    candidates = [
        Candidate(0, 1.0, 4.0, 0.5),
        Candidate(0, 1.5, 3.0, 0.9),  # best for the point at 2.0
        Candidate(1, 1.0, 6.0, 0.99),  # other class: never taken by a class-0 point
        Candidate(0, 8.0, 9.0, 0.2),
    ]
    found, counts = instances_from_candidates([(2.0, 0), (8.5, 0)], candidates, snippet_seconds=U, duration=20.0)
    assert found == [PseudoInstance(0, 1.5, 3.0, 2.0), PseudoInstance(0, 8.0, 9.0, 8.5)]
    assert (counts.points, counts.instances, counts.contained, counts.fallback, counts.split, counts.merged) == (
        2,
        2,
        2,
        0,
        0,
        0,
    )


def test_a_point_no_candidate_contains_keeps_its_snippet():
    found, counts = instances_from_candidates(
        [(3.3, 1)], [Candidate(1, 0.0, 1.0, 1.0)], snippet_seconds=U, duration=20.0
    )
    # 3.3 s lies in snippet floor(3.3 / 0.64) = 5: [3.2, 3.84)
    assert found == [PseudoInstance(1, pytest.approx(5 * U), pytest.approx(6 * U), 3.3)]
    assert counts.fallback == 1 and counts.contained == 0


def test_two_points_in_one_candidate_are_split_between_them():
    # one merged proposal [2, 10] holds points at 3 and 5: the middle of the overlap (6) is
    # clipped to [3, 5], so the split is at 5 - the second instance starts at its own point
    found, counts = instances_from_candidates(
        [(5.0, 0), (3.0, 0)], [Candidate(0, 2.0, 10.0, 1.0)], snippet_seconds=U, duration=20.0
    )
    assert found == [PseudoInstance(0, 2.0, 5.0, 3.0), PseudoInstance(0, 5.0, 10.0, 5.0)]
    assert counts.split == 1


def test_overlapping_candidates_are_cut_in_the_middle_of_the_overlap():
    candidates = [Candidate(0, 1.0, 6.0, 1.0), Candidate(0, 4.0, 9.0, 1.0)]
    found, counts = instances_from_candidates([(2.0, 0), (8.0, 0)], candidates, snippet_seconds=U, duration=20.0)
    # overlap [4, 6], middle 5 (inside [2, 8])
    assert found == [PseudoInstance(0, 1.0, 5.0, 2.0), PseudoInstance(0, 5.0, 9.0, 8.0)]
    assert counts.split == 1


def test_duplicate_points_share_one_instance_and_are_counted():
    found, counts = instances_from_candidates(
        [(2.0, 0), (2.0, 0), (2.5, 1)],
        [Candidate(0, 1.0, 3.0, 1.0), Candidate(1, 2.0, 4.0, 1.0)],
        snippet_seconds=U,
        duration=20.0,
    )
    assert found == [PseudoInstance(0, 1.0, 3.0, 2.0), PseudoInstance(1, 2.0, 4.0, 2.5)]  # classes may overlap
    assert (counts.points, counts.instances, counts.merged) == (3, 2, 1)


def test_instances_are_clipped_to_the_video():
    found, _ = instances_from_candidates([(0.1, 0), (9.9, 0)], [], snippet_seconds=1.0, duration=9.95)
    assert found == [PseudoInstance(0, 0.0, 1.0, 0.1), PseudoInstance(0, 9.0, 9.95, 9.9)]
