"""pseudo stage: trained LACP model + points -> instance-level pseudo ground truth of the training videos.

The first half of self-training (the `selftrain` stage trains a fully-supervised detector on
this file). One instance per point of the videos LACP trained on (the model folder's split:
never a validation or test video), by `source`:
- `proposals`: LACP's inference on each training video, proposals after NMS, localised for the
  classes the video's points name, with the params' `detection` settings (equal to the model folder's record);
- `search`: the last optimal-sequence search's pseudo labels (the train stage's `pseudo_labels.h5`);
- `ground_truth`: the true training instances (the fully-supervised upper bound of the same
  detector on the same features and videos; points are not used).
`lacp.pseudo_instances` turns the candidates and points into instances (one per point, overlaps
within a class split, duplicates merged, every point counted).

Outputs: `<pseudo>/pseudo_gt.json` (ActivityNet ground-truth format: `{"database": {vid:
{"subset": "train", "duration", "fps", "annotations": [{"segment", "label"}]}}, "classes",
"source"}`, read by `stages.artifacts.read_pseudo_instances`) and `<pseudo_report>/metrics.json` (the
counts and the instances' quality against the training ground truth, `lacp.pseudo_quality`:
a diagnostic, never used to choose anything).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np

from core.device import resolve_device
from core.files import write_json
from features.store import FeatureStore
from lacp.inference import score_video
from lacp.model_io import load_model, read_checked_meta
from lacp.points.formats import read_points_csv
from lacp.proposals import DetectionConfig, generate_proposals
from lacp.pseudo_instances import (
    Candidate,
    PseudoCounts,
    PseudoGroundTruth,
    PseudoInstance,
    instances_from_candidates,
    search_candidates,
)
from lacp.pseudo_quality import pseudo_label_quality
from lacp.search_record import read_search_record
from lacp.splits import read_split
from stages.artifacts import PSEUDO_GT_FILE, LacpRun, available_videos, ground_truth_instances, read_annotations
from stages.common import StageParams


class PseudoParams(StageParams):
    source: Literal["proposals", "search", "ground_truth"] = "search"
    device: Literal["auto", "cpu", "cuda"] = "auto"


def proposal_candidates(
    model,
    features: np.ndarray,
    classes: set[int],
    detection: DetectionConfig,
    device,
    *,
    num_segments: int,
    snippet_seconds: float,
) -> list[Candidate]:
    """LACP's proposals (after NMS) of one training video, for the classes its points name.

    Args:
        model: the trained LACP network.
        features: (T, D) the video's features.
        classes: class indices the video's points name (its known video-level labels).
        detection: the params' detection settings (equal to the model folder's record).
        device: where the network runs.
        num_segments: the model's training sequence length (model.json).
        snippet_seconds: seconds per snippet of the feature grid.

    Returns:
        The candidates, segments in seconds.
    """
    scored = score_video(model, features, detection, device, num_segments=num_segments, snippet_seconds=snippet_seconds)
    known = np.zeros(model.num_classes)  # (C,) the video's labels: localise exactly these classes
    known[sorted(classes)] = 1.0
    proposals = generate_proposals(scored.q, config=detection, snippet_seconds=scored.seconds, video_score=known)
    return [Candidate(p["label_index"], p["segment"][0], p["segment"][1], p["score"]) for p in proposals]


def run(
    params: PseudoParams,
    *,
    detection: DetectionConfig,
    lacp_run: LacpRun,
    out_dir: Path,
    report_dir: Path,
) -> dict[str, Any]:
    """Write the pseudo ground truth of LACP's training videos and its diagnostics.

    Args:
        params: the `pseudo` params section.
        detection: the params' detection section, LACP's keys (`source: proposals`; the model
            folder's record must equal it, as evaluate's does).
        lacp_run: the trained LACP run's artifacts (`stages.artifacts.LacpRun`).
        out_dir: where pseudo_gt.json goes.
        report_dir: where metrics.json goes (DVC metrics, committed with the run).

    Returns:
        Summary: source, videos, the counts of `lacp.pseudo_instances.PseudoCounts`, and the
        quality (`pseudo_iou`, ...).
    """
    # 1. inputs: the videos LACP trained on and their points
    annotations = read_annotations(lacp_run.dataset_dir)
    database = annotations["database"]
    points: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for point in read_points_csv(Path(lacp_run.points_dir) / "points.csv", annotations):
        points[point.video_id].append((point.time, point.class_index))
    found = PseudoGroundTruth()
    with FeatureStore(lacp_run.features) as store:
        videos = available_videos(
            store, list(read_split(lacp_run.model_dir).train), features=Path(lacp_run.features), what="training"
        )
        grid = store.time_grid
        lengths = {vid: int(store[vid].shape[0]) for vid in videos}

        # 2. candidates and instances, video by video
        if params.source == "ground_truth":
            for vid in videos:
                truth = [
                    PseudoInstance(c, start, end, float(np.mean([start, end])))
                    for c, start, end in ground_truth_instances(annotations, [vid])[vid]
                ]
                found.add(vid, truth, PseudoCounts(instances=len(truth)))
        else:
            if params.source == "search":
                record = read_search_record(Path(lacp_run.pseudo_labels))
                missing = [v for v in videos if v not in record.final]
                if record.final_step == 0 or missing:
                    raise ValueError(
                        f"{lacp_run.pseudo_labels}: no last-search pseudo labels for {len(missing) or len(videos)} "
                        f"training video(s) (a run without searches, e.g. the point-only baseline?); "
                        f"use pseudo.source: proposals"
                    )
            else:
                device = resolve_device(params.device)
                meta = read_checked_meta(lacp_run.model_dir, detection)
                model = load_model(lacp_run.model_dir, device=device)
            for vid in videos:
                if params.source == "search":
                    candidates = search_candidates(record.final[vid], snippet_seconds=grid.seconds_per_snippet)
                else:
                    candidates = proposal_candidates(
                        model,
                        store[vid],
                        {c for _, c in points[vid]},
                        detection,
                        device,
                        num_segments=meta["num_segments"],
                        snippet_seconds=grid.seconds_per_snippet,
                    )
                duration = lengths[vid] * grid.seconds_per_snippet
                found.add(
                    vid,
                    *instances_from_candidates(
                        points[vid],
                        candidates,
                        snippet_seconds=grid.seconds_per_snippet,
                        duration=min(duration, float(database[vid]["duration"])),
                    ),
                )

    # 3. diagnostics (ground truth read for the log only) and outputs
    quality = instance_quality(found, annotations, lengths, snippet_seconds=grid.seconds_per_snippet)
    counts = vars(found.counts)
    if params.source != "ground_truth" and counts["instances"] + counts["merged"] != counts["points"]:
        raise RuntimeError(
            f"pseudo: {counts['points']} points gave {counts['instances']} instances and "
            f"{counts['merged']} merged duplicates"
        )  # every point is one instance or a duplicate
    write_json(Path(out_dir) / PSEUDO_GT_FILE, pseudo_gt_document(found, annotations, params.source))
    summary = {"source": params.source, "videos": len(videos), **counts, **{k: round(v, 4) for k, v in quality.items()}}
    write_json(Path(report_dir) / "metrics.json", summary)
    return summary


def instance_quality(
    found: PseudoGroundTruth, annotations: dict[str, Any], lengths: dict[str, int], *, snippet_seconds: float
) -> dict[str, float]:
    """`lacp.pseudo_quality` of the instances, each drawn as the snippets whose centre it holds."""
    classes = annotations["classes"]
    dense = {}
    for vid, instances in found.instances.items():
        centres = (np.arange(lengths[vid]) + 0.5) * snippet_seconds  # (T,)
        labels = np.zeros((lengths[vid], len(classes)), dtype=np.uint8)  # (T, C)
        for inst in instances:
            labels[(centres >= inst.start) & (centres <= inst.end), inst.class_index] = 1
        dense[vid] = labels
    return pseudo_label_quality(
        dense, ground_truth_instances(annotations, list(dense)), snippet_seconds=snippet_seconds
    )


def pseudo_gt_document(found: PseudoGroundTruth, annotations: dict[str, Any], source: str) -> dict[str, Any]:
    """pseudo_gt.json: the instances in the ActivityNet ground-truth format of annotations.json."""
    classes = annotations["classes"]
    database = annotations["database"]
    return {
        "source": source,
        "classes": list(classes),
        "database": {
            vid: {
                "subset": "train",
                "duration": database[vid]["duration"],
                "fps": database[vid]["fps"],
                "annotations": [
                    {"segment": [round(i.start, 6), round(i.end, 6)], "label": classes[i.class_index]}
                    for i in instances
                ],
            }
            for vid, instances in sorted(found.instances.items())
        },
    }
