"""The base of every library config: a frozen pydantic model that forbids unknown keys.

A library's config (`lacp.trainer.TrainSettings`, `lacp.points.sampling.Sampling`,
`sources.synthetic.SyntheticSpec`, `detector.config.DetectorConfig`) states each setting once:
its name, type, default, constraint and comment. The stage that builds it subclasses it
(`stages.common.StageParams` adds the params' fingerprint), so a params.yaml key reaches the
library under its own name, and a bad value is refused on load, naming the key.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Config"]


class Config(BaseModel):
    """Settings: immutable (hashable, safe to share), unknown keys an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)
