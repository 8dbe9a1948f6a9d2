"""Which torch device a `device: auto | cpu | cuda` parameter means on this machine."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(name: str) -> torch.device:
    """Args:
        name: "auto" (cuda when available, else cpu) or any torch device name.

    Returns:
        The torch device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
