"""A validation split carved from the training videos, and its record in the model folder.

Defaults and any checkpoint selection other than the (labelled) best-on-test protocol are
chosen on these held-out training videos; the test subset is reported, never used to choose.

The split is a function of the sorted video ids, the share and the seed only (not of the
order the ids come in, nor of which videos later fail upstream), so a rerun with the same
annotations and params holds out the same videos. `split.json` in the model folder records
it for the evaluate stage.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.files import write_bytes_atomic

__all__ = ["SPLIT_FILE", "Split", "read_split", "validation_split", "write_split"]

SPLIT_FILE = "split.json"  # in the model folder, beside model.pt and model.json


@dataclass(frozen=True)
class Split:
    """A recorded split of the training videos.

    Attributes:
        train: the videos trained on, sorted.
        validation: the held-out videos, sorted (empty for share 0).
        share: the requested validation share.
        seed: the seed of the draw.
    """

    train: tuple[str, ...]
    validation: tuple[str, ...]
    share: float
    seed: int


def validation_split(
    video_ids: Sequence[str],
    *,
    share: float,
    seed: int,
    labels: Mapping[str, Collection[str]] | None = None,
) -> tuple[list[str], list[str]]:
    """Split training videos into a training part and a validation part.

    The ids are sorted, then permuted by `numpy.random.default_rng(seed)`; the validation
    part is taken in that order. Its size is `round(share * N)` (Python's round, half to
    even), at least 1 when `share` > 0 and N >= 2, and at most N - 1: one training video
    always stays (N = 1 holds out nothing).

    With `labels`, the draw is stratified so that every class keeps at least one training
    video where possible: a video is skipped while holding it out would leave one of its
    classes without a training video; if too few videos can be held out that way, the size
    still wins and the skipped videos are taken in permuted order.

    Args:
        video_ids: the training videos (distinct ids, any order).
        share: fraction of the videos held out, in [0, 1); 0 = no validation videos.
        seed: seed of the draw.
        labels: optional video id -> class names of its instances (an entry for every id;
            an empty collection for a video without instances).

    Returns:
        (train_ids, validation_ids), each sorted; disjoint, and together the input ids.

    Raises:
        ValueError: a share outside [0, 1), duplicate ids, or `labels` lacking an id.
    """
    if not (isinstance(share, (int, float)) and 0 <= share < 1):
        raise ValueError(f"validation split: share (train.validation_share) must be in [0, 1), got {share!r}")
    ids = sorted(video_ids)
    repeated = sorted(vid for vid, count in Counter(ids).items() if count > 1)
    if repeated:
        raise ValueError(f"validation split: video ids must be distinct; repeated: {', '.join(repeated[:20])}")
    if labels is not None:
        unlabelled = [vid for vid in ids if vid not in labels]
        if unlabelled:
            raise ValueError(f"validation split: labels lack {len(unlabelled)} video(s), e.g. {unlabelled[0]!r}")
    wanted = max(1, round(share * len(ids))) if share > 0 else 0
    wanted = min(wanted, max(len(ids) - 1, 0))
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]  # (N,) permuted ids
    held: list[str] = []
    if labels is None:
        held = order[:wanted]
    else:
        left = Counter(label for vid in ids for label in set(labels[vid]))  # training videos per class
        for vid in order:
            if len(held) == wanted:
                break
            if all(left[label] > 1 for label in set(labels[vid])):
                held.append(vid)
                left.subtract(set(labels[vid]))
        taken = set(held)
        held += [vid for vid in order if vid not in taken][: wanted - len(held)]
    chosen = set(held)
    return [vid for vid in ids if vid not in chosen], sorted(chosen)


def write_split(model_dir: Path, *, train: Sequence[str], validation: Sequence[str], share: float, seed: int) -> Path:
    """Write `SPLIT_FILE` into the model folder atomically.

    Args:
        model_dir: the train stage's output folder.
        train: the training part.
        validation: the validation part.
        share: the requested validation share.
        seed: the seed of the draw.

    Returns:
        The path written: `{"train": [...], "validation": [...], "share": s, "seed": n}`.
    """
    path = Path(model_dir) / SPLIT_FILE
    record = {"train": sorted(train), "validation": sorted(validation), "share": share, "seed": seed}
    write_bytes_atomic(path, (json.dumps(record, indent=2) + "\n").encode())
    return path


def read_split(model_dir: Path) -> Split:
    """Read `SPLIT_FILE` from the model folder.

    Args:
        model_dir: the train stage's output folder.

    Returns:
        The recorded split.

    Raises:
        FileNotFoundError: the folder has no split file.
        ValueError: the file is not JSON, lacks a key, or a key has the wrong type (the
            message names the file and the key).
    """
    path = Path(model_dir) / SPLIT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (run the train stage first)")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(record, Mapping):
        raise ValueError(f"{path}: expected an object with keys train, validation, share, seed")
    for key in ("train", "validation"):
        value = record.get(key)
        if not isinstance(value, list) or not all(isinstance(vid, str) for vid in value):
            raise ValueError(f"{path}: key {key!r} must be a list of video ids, got {value!r}")
    share, seed = record.get("share"), record.get("seed")
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not math.isfinite(share):
        raise ValueError(f"{path}: key 'share' must be a number, got {share!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{path}: key 'seed' must be an integer, got {seed!r}")
    return Split(train=tuple(record["train"]), validation=tuple(record["validation"]), share=float(share), seed=seed)
