"""The feature time grid: which seconds of a video each feature snippet stands for.

Decode resamples every video to `fps` frames per second; extract cuts snippets of `snippet`
frames every `stride` frames. Snippet t therefore starts at t * stride / fps seconds, and
the LACP convention places a point at source frame f (source frame rate F) in snippet
floor(f * fps / (F * stride)) (released recipe: 25 fps, stride 16, 0.64 s per snippet).

One grid per feature store: extract writes it into the store's attributes from the decode
and extract params that made the features, and everything that maps between snippets and
seconds (point labels, pseudo-label quality, proposals, timelines) reads it back with
`TimeGrid.from_attrs`, so changing `decode.fps` or `extract.stride` moves every point and
every detection consistently.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["RELEASED_GRID", "TimeGrid"]

# floor(x) of a value that should be an exact integer may come out as k - 1e-15 in floating
# point; this tolerance puts such values on the integer (far below one frame's share).
_FLOOR_EPS = 1e-9


@dataclass(frozen=True)
class TimeGrid:
    """Attributes:
    fps: frame rate of the decoded video the snippets were cut from.
    snippet: frames per snippet.
    stride: frames between the starts of consecutive snippets.
    """

    fps: float
    snippet: int
    stride: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"time grid: fps must be a positive number, got {self.fps!r}")
        for name in ("snippet", "stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"time grid: {name} must be a positive integer, got {value!r}")

    @property
    def seconds_per_snippet(self) -> float:
        """Seconds between the starts of consecutive snippets (stride / fps)."""
        return self.stride / self.fps

    def snippet_of_frames(self, frames: np.ndarray, *, source_fps: float) -> np.ndarray:
        """Snippet index floor(f * fps / (source_fps * stride)) of each source frame f (not clipped).

        Args:
            frames: (N,) frame indices at the source frame rate, >= 0.
            source_fps: the source video's frame rate, > 0.

        Returns:
            (N,) int64 snippet indices.
        """
        position = np.asarray(frames, dtype=np.float64) * self.fps / (source_fps * self.stride)  # (N,)
        return np.floor(position + _FLOOR_EPS).astype(np.int64)

    def as_attrs(self) -> dict[str, Any]:
        """The store attributes that record this grid."""
        return {"fps": self.fps, "snippet": self.snippet, "stride": self.stride}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any], *, where: str) -> TimeGrid:
        """The grid recorded in a feature store's attributes.

        Args:
            attrs: the store's file attributes.
            where: the store's path, named in errors.

        Raises:
            ValueError: a grid attribute is missing or invalid (naming the file and the key).
        """
        missing = [k for k in ("fps", "snippet", "stride") if k not in attrs]
        if missing:
            raise ValueError(
                f"{where}: the feature store records no time grid attribute(s) {missing} (rerun the extract stage)"
            )
        try:
            return cls(fps=float(attrs["fps"]), snippet=int(attrs["snippet"]), stride=int(attrs["stride"]))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: invalid time grid attributes: {err}") from None


RELEASED_GRID = TimeGrid(fps=25.0, snippet=16, stride=16)
"""The released recipe's grid (and the default params'): 16-frame snippets at 25 fps."""
