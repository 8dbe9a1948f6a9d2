"""Kinetics-400 classification of a whole clip: the sanity check of converted I3D weights."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import torch
from torchvision.models.video import R3D_18_Weights

from features.i3d import I3DInference, prepare_for_inference
from features.snippets import preprocess_rgb
from features.weights import load_i3d, load_kinetics_rgb_i3d

__all__ = ["classify_clip", "clip_logits", "kinetics400_classes", "read_rgb_frames", "top_classes"]

CROP = 224
SHORT_SIDE = 256


def kinetics400_classes() -> list[str]:
    """Returns: the 400 Kinetics class names in label order (torchvision's metadata; no download)."""
    return list(R3D_18_Weights.KINETICS400_V1.meta["categories"])


def read_rgb_frames(path: Path) -> np.ndarray:
    """Decode every frame of a video or animated GIF with PyAV.

    Args:
        path: any container FFmpeg reads (mp4, avi, gif, ...).

    Returns:
        (N, H, W, 3) uint8 RGB.

    Raises:
        ValueError: the file cannot be decoded or has no video frames.
    """
    path = Path(path)
    try:
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except (av.error.FFmpegError, IndexError) as error:
        raise ValueError(f"{path}: cannot decode video frames: {error}") from None
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return np.stack(frames)


def clip_logits(path: Path, model: I3DInference) -> np.ndarray:
    """Kinetics logits of a whole clip, as in DeepMind's evaluate_sample.

    A clip already `CROP` x `CROP` is used as is; others are resized (short side `SHORT_SIDE`)
    and centre cropped. Pixels map to [-1, 1] and the whole clip is one batch.

    Args:
        path: video or GIF (at least 9 frames).
        model: an RGB I3D from `prepare_for_inference` (float32 to reproduce the reference).

    Returns:
        (num_classes,) float32 logits.
    """
    frames = read_rgb_frames(path)  # (N, H, W, 3)
    as_is = frames.shape[1:3] == (CROP, CROP)
    clip = preprocess_rgb(frames, short_side=None if as_is else SHORT_SIDE, crop=CROP)
    x = torch.from_numpy(clip).permute(3, 0, 1, 2).unsqueeze(0)  # (1, 3, N, 224, 224)
    return model.logits(x)[0].cpu().numpy()


def top_classes(logits: np.ndarray, *, top: int = 5) -> list[tuple[str, float]]:
    """Args:
        logits: (400,) Kinetics-400 logits.
        top: how many classes to return.

    Returns:
        [(class_name, logit)] sorted by decreasing logit, `top` long.
    """
    names = kinetics400_classes()
    if logits.shape != (len(names),):
        raise ValueError(f"top_classes: expected ({len(names)},) Kinetics logits, got {logits.shape}")
    order = np.argsort(-logits, kind="stable")[:top]
    return [(names[i], float(logits[i])) for i in order]


def classify_clip(
    path: Path,
    weights: Path | None = None,
    *,
    top: int = 5,
    device: torch.device | str = "cpu",
) -> list[tuple[str, float]]:
    """Top Kinetics-400 classes of a whole clip with RGB I3D in float32 (see `clip_logits`).

    Args:
        path: video or GIF.
        weights: converted RGB I3D state-dict (`.pt`, see `features.weights`); None fetches
            (once, cached) and converts DeepMind's checkpoint.
        top: how many classes to return.
        device: where to run.

    Returns:
        [(class_name, logit)] sorted by decreasing logit, `top` long.
    """
    model = load_kinetics_rgb_i3d() if weights is None else load_i3d(weights, in_channels=3)
    prepared = prepare_for_inference(model, dtype=torch.float32, device=device)
    return top_classes(clip_logits(path, prepared), top=top)
