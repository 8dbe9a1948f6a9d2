"""The embedded synthetic dataset: seeded mp4 videos with known action intervals.

Built as a fair test of *completeness* learning (a detector trained from one labelled frame
per instance must learn to cover whole actions, not only the labelled moment):

- Every action instance is one object of its class that appears at low contrast at the
  start of its segment, grows and speeds up towards a peak (its most salient moment,
  stored as ``salient``), where it performs its class motion most strongly and is most
  visible, then weakens again until it vanishes at the segment end. Contrast, size, motion
  amplitude and motion speed all follow the same envelope (0 at the boundaries, 1 at the
  peak), so frames near the boundaries look unlike frames near the peak.
- Classes differ in shape/texture *and* motion pattern (`CLASS_LIBRARY`). Within a class,
  speed, size, colour, position, orientation, direction and duration (0.6 to 8 s by
  default) vary per instance.
- The background is never empty: a smooth random texture whose brightness drifts slowly,
  soft blobs that wander across the frame (motion that is not an action) and sensor noise.
- Several instances per video, some videos with two classes, actions covering roughly a
  third of the time (at most ``max_coverage``).

Everything is drawn from ``numpy.random.default_rng`` streams keyed by (seed, subset, video
index, component), so the same spec gives bit-identical annotations and, with the same
PyAV/libx264 build (the encoder runs single-threaded), identical video bytes. Frames are
generated in vectorised chunks of ``(F, H, W)`` arrays.

Modules: `spec` (class library, `SyntheticSpec`), `plan` (videos and instances, annotations),
`render` (pixels and H.264 files); this package's entry point, `render_videos`, renders a whole
dataset.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from sources.synthetic.plan import SyntheticInstance, SyntheticVideo, dataset_annotations, plan_dataset
from sources.synthetic.render import envelope, render_frames, render_video
from sources.synthetic.spec import CLASS_LIBRARY, ActionClass, SyntheticSettings, SyntheticSpec

__all__ = [
    "CLASS_LIBRARY",
    "ActionClass",
    "SyntheticInstance",
    "SyntheticSettings",
    "SyntheticSpec",
    "SyntheticVideo",
    "dataset_annotations",
    "envelope",
    "plan_dataset",
    "render_frames",
    "render_video",
    "render_videos",
]


def render_videos(
    video_dir: Path,
    *,
    spec: SyntheticSpec,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Render every video of a spec as ``video_dir/<vid>.mp4``.

    Videos do not depend on each other, so ``workers > 1`` renders them in that many
    processes with identical results.

    Args:
        video_dir: folder for the mp4 files (created when missing).
        spec: the dataset spec.
        workers: processes rendering videos at once (1 = in this process).
        progress: called with each video id once its file is written.

    Returns:
        (annotations, videos): the project annotations (see `dataset_annotations`) and
        ``{vid: path}``, each path ``video_dir/<vid>.mp4`` joined as given (relative when
        ``video_dir`` is).
    """
    if workers < 1:
        raise ValueError(f"render_videos: workers must be >= 1, got {workers}")
    plan = plan_dataset(spec)
    videos = {video.video_id: (Path(video_dir) / f"{video.video_id}.mp4").as_posix() for video in plan}
    if workers == 1:
        for video in plan:
            render_video(video, Path(videos[video.video_id]), spec=spec)
            if progress is not None:
                progress(video.video_id)
    else:
        context = multiprocessing.get_context("spawn")  # no fork of a possibly threaded parent
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            jobs = {pool.submit(render_video, v, Path(videos[v.video_id]), spec=spec): v.video_id for v in plan}
            for job in as_completed(jobs):
                job.result()
                if progress is not None:
                    progress(jobs[job])
    return dataset_annotations(plan, spec), videos
