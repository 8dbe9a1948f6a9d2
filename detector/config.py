"""The detector's settings: every size, with the reason for its default.

Defaults are sized for the project's default synthetic dataset (32 training videos of 14-22 s
decoded at 25 fps, 16-frame snippets: T = 22-35 snippets per video, up to 78 where the
instances need room, 4 classes, instances of 0.6-8 s = 1-13 snippets) and its `heldout`
preset (T = 31-50, instances of 1.6-12.5 snippets).
The published THUMOS'14 setting of ActionFormer differs where the data does, and the field
comments say what it uses there (T up to ~2300 snippets, instances up to ~100 snippets):
`embed_dim` 512, `window` 19, `num_levels` 6, `batch` 2, lr 1e-4 over ~35 epochs.

Measured (detector trained on the true instances of the default dataset's 32 training videos,
validation = the 8 held-out videos of `lacp.splits.validation_split(share 0.2, seed 0)`,
avg mAP@0.1:0.7 over seeds 0-2, one CPU thread, ~1 min of training each): these defaults
75.3 (test 78.4); without the weight EMA (`ema_decay` 0) 75.2 (test 80.3); 1,200 steps 70.3
(test 83.1). Single runs (seed 0, EMA 0.99, the paper's ReLU regression output, where these settings
gave 74.6): 300 steps 50.7 (underfit: final loss 3.5x higher); D = 256 73.2, window 19 66.8,
lr 5e-4 76.0, dropout 0 75.5: none better by more than the seeds' spread (72-80), none adopted.

Units: "snippets" are steps of the features' time grid (`features.timegrid`; 0.64 s by
default). A pyramid level l has stride 2**l snippets.

Regression ranges (`regression_ranges`): level 0 takes locations whose larger distance to the
instance's boundaries is in [0, base), level l > 0 [base 2**(l-1), base 2**l), the last level
[base 2**(L-2), inf). With base 4 (the paper's), a location at stride s always regresses
distances of 2 s to 4 s, i.e. targets of 2 to 4 in its own stride units (the last level's may
be larger): every level sees the same scale of targets.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import ConfigDict, Field, model_validator

from core.config import Config

__all__ = ["DetectorConfig", "DetectorSettings", "InferenceConfig", "RESUMABLE_CHANGES", "regression_ranges"]

RESUMABLE_CHANGES = frozenset({"checkpoint_every", "device"})
"""`DetectorConfig` fields a resumed run may change; the rest must match the checkpoint
(`steps` too: the cosine schedule ends at `steps`, so the steps already taken depend on it)."""


class DetectorSettings(Config):
    """Network, targets, losses and optimisation of one detector training run: every key of
    params.yaml's `selftrain` section that the detector reads, under its own name (the
    selftrain stage's params subclass this)."""

    # --- network ---
    # Embedding width D. 128: ~1,000 training snippets (32 videos x ~30) cannot feed the paper's 512
    # (tens of millions of parameters); 128 gives 2.0 M, 0.8 M of them in the first projection conv
    # (2048 x 3 x D).
    embed_dim: int = Field(128, ge=1)
    # Attention heads: 4 heads of D / 4 = 32 channels.
    num_heads: int = Field(4, ge=1)
    # Local attention window (odd): a location attends to |i - j| <= window // 2 of its level.
    # 9 = +-4 snippets (2.6 s) at level 0, +-8 at level 1, +-16 (a whole default video) at level 2:
    # level 0 holds instances up to ~8 snippets, which fit in one window with context on each side.
    # The paper uses 19 on THUMOS'14 (T up to 2,300).
    window: int = Field(9, ge=1)
    # Transformer blocks at full resolution before the pyramid (the paper's 2).
    stem_blocks: int = Field(2, ge=0)
    # Pyramid levels L (strides 1, 2, ..., 2**(L-1)); one downsampling transformer block per level
    # after the first. 4 (strides 1-8) with base 4 covers [0, 4), [4, 8), [8, 16), [16, inf) snippets:
    # default instances (1-13 snippets, farthest boundary <= 6.5 + centre offset) use levels 0-1,
    # heldout's longest level 2; level 3 still has 3-6 locations on T = 22-50. THUMOS'14: 6.
    num_levels: int = Field(4, ge=1)
    # Hidden width of each block's MLP, as a multiple of D (the standard transformer's 4).
    mlp_ratio: int = Field(4, ge=1)
    # Conv layers per head, the output conv included (the paper's 3: two conv+LayerNorm+ReLU, one out).
    head_layers: int = Field(3, ge=1)
    # Dropout on attention weights and MLP / attention outputs. 0.1: 32 training videos overfit
    # quickly (the paper uses 0 plus stochastic depth 0.1 on 200 THUMOS'14 videos).
    dropout: float = Field(0.1, ge=0, lt=1)
    # Prior probability of the classification bias at initialisation (RetinaNet / the paper's 0.01):
    # the focal loss starts near the background rate instead of swamping the first steps.
    prior_prob: float = Field(0.01, gt=0, lt=1)

    # --- targets (`detector.targets`) ---
    # Regression range base, in snippets: level ranges [0, b), [b, 2b), [2b, 4b), ... (module docstring).
    range_base: float = Field(4.0, gt=0, allow_inf_nan=False)
    # Centre sampling radius r, in strides: a location is positive only within r * stride of the
    # instance's centre (clipped to the instance). The paper's 1.5: 3 positives at level 0.
    center_radius: float = Field(1.5, gt=0, allow_inf_nan=False)

    # --- losses (`detector.losses`) ---
    # Sigmoid focal loss alpha (weight of the positive term) and gamma (the paper's 0.25 and 2).
    focal_alpha: float = Field(0.25, ge=0, lt=1)
    focal_gamma: float = Field(2.0, ge=0, allow_inf_nan=False)
    # Weight of the DIoU regression loss in total = cls + reg_weight * reg (the paper's 1).
    reg_weight: float = Field(1.0, ge=0, allow_inf_nan=False)
    # Momentum of the EMA of the positive count that normalises both losses (the paper's 0.9) ...
    loss_norm_momentum: float = Field(0.9, ge=0, lt=1)
    # ... and its initial value: the positives of a batch of 4 default videos (measured: 9.2 positive
    # locations per default training video, 3 per instance), so the first steps are not over-weighted.
    loss_norm_init: float = Field(36.0, gt=0, allow_inf_nan=False)

    # --- optimisation (`detector.trainer`) ---
    # Optimisation steps: 600 = 75 epochs of 32 videos at batch 4 (the paper: ~35 epochs of 200
    # videos at batch 2, ~3,500 steps); 300 underfits, 1,200 measured no better (module docstring).
    steps: int = Field(600, ge=1)
    # Videos per step (each video whole, padded to the batch's longest).
    batch: int = Field(4, ge=1)
    # AdamW peak learning rate and weight decay. 1e-3 for the small D (the paper: 1e-4 at D = 512);
    # weight decay 0.05 as in the paper (not on biases, norms and the per-level scales).
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(0.05, ge=0, allow_inf_nan=False)
    # Linear warm-up steps from 0 to lr (5 epochs at batch 4 on 32 videos, the paper's 5 epochs),
    # then cosine decay to 0 at `steps`.
    warmup_steps: int = Field(40, ge=0)
    # Gradient clipping: the global L2 norm is clipped to this (the paper's 1.0).
    grad_clip: float = Field(1.0, gt=0, allow_inf_nan=False)
    # Exponential moving average of the weights, returned instead of the last step's when > 0 (the
    # paper keeps one at 0.999 over ~3,500 steps; 0.99 averages the last ~100 of 600). It measured
    # level with the last step's weights on validation (75.3 against 75.2, module docstring).
    ema_decay: float = Field(0.99, ge=0, lt=1)
    # Steps between resumable checkpoints (0 = only after the last step).
    checkpoint_every: int = Field(100, ge=0)
    # Weights init, batch order and dropout.
    seed: int = 0
    # "auto" (cuda when available) | "cpu" | "cuda" | "cuda:N".
    device: str = "auto"

    @model_validator(mode="after")
    def _shapes_fit(self) -> DetectorSettings:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} must be a multiple of num_heads {self.num_heads}")
        if self.window % 2 == 0:
            raise ValueError(f"window must be odd (centred on each location), got {self.window}")
        return self


class DetectorConfig(DetectorSettings):
    """The settings, plus the input width that the feature store gives."""

    # Input width: I3D RGB (1024) and flow (1024) side by side, as `features.store.FeatureStore` reads them.
    feature_dim: int = Field(2048, ge=1)

    @property
    def max_stride(self) -> int:
        """Stride of the coarsest level, 2**(L-1): padded lengths are multiples of it."""
        return 2 ** (self.num_levels - 1)


def regression_ranges(*, num_levels: int, base: float) -> np.ndarray:
    """The [low, high) range, in snippets, of the larger boundary distance each level regresses.

    Args:
        num_levels: L >= 1.
        base: b > 0.

    Returns:
        (L, 2) float64: [0, b), [b, 2b), [2b, 4b), ..., the last row's high inf (and the first
        row's low 0 even when L = 1, so that one level takes everything).
    """
    edges = [0.0] + [base * 2.0**level for level in range(num_levels - 1)] + [math.inf]  # (L+1,)
    return np.stack([edges[:-1], edges[1:]], axis=1)


class InferenceConfig(Config):
    """How the heads' outputs become detections (`detector.postprocess`); not part of training.
    The params' `detection.detector` section (each default and range declared here once),
    recorded in the model folder by the selftrain stage and applied by evaluate_selftrain and
    `python -m pipeline detect` (whose flags the descriptions document)."""

    model_config = ConfigDict(allow_inf_nan=False)  # besides Config's: frozen, unknown keys refused

    # Candidates below this score (the class probability, fused with LACP's video score when the
    # folder has one: `own_class_weight`) are dropped before decoding (the paper's 0.001).
    score_threshold: float = Field(0.001, ge=0, description="candidates below this score are dropped")
    # At most this many (location, class) candidates per pyramid level, by probability (THUMOS'14's
    # level 0 has up to ~2,300 locations x 20 classes; a default video has ~60 locations x 4 classes).
    pre_nms_topk: int = Field(1000, ge=1, description="candidates kept per pyramid level before Soft-NMS")
    # Decoded segments not longer than this (snippets) are dropped (the paper: 0.05 s; 0.05 snippets).
    min_length: float = Field(0.05, ge=0, description="segments not longer than this (snippets) are dropped")
    # Gaussian Soft-NMS: a segment's score is multiplied by exp(-tIoU**2 / sigma) with each selected
    # segment of its class (the paper's 0.5).
    nms_sigma: float = Field(0.5, gt=0, description="Gaussian Soft-NMS: score x exp(-tIoU^2 / sigma)")
    # Decayed scores below this are dropped (the paper's 0.001).
    min_score: float = Field(0.001, ge=0, description="decayed scores below this are dropped")
    # Detections kept per video, by score over all classes (the paper: 200 on THUMOS'14's long
    # videos; 100 is ~30 per instance on the default ones, far past the last recall step).
    max_segments: int = Field(100, ge=1, description="detections kept per video")
    # Boundary voting at the last Soft-NMS (the merge's when `lacp_proposals`, else the detector's
    # own): each kept segment's start and end become the score-weighted mean of its class's
    # candidates there whose tIoU with it is at least this; 0 = off. ActionFormer votes at 0.7 on
    # THUMOS'14; 0.6 was chosen on the validation videos of both synthetic families, where
    # 0.5-0.7 tie (docs/STUDIES.md): voting averages the detector's and LACP's bounds of an instance;
    # for the detector alone (`lacp_proposals` false) 0 is better there.
    voting_tiou: float = Field(
        0.6,
        ge=0,
        le=1,
        description="the last Soft-NMS's kept segments average the bounds of candidates with tIoU >= this (0: off)",
    )
    # With a folder that fuses LACP's video scores (`selftrain.video_scores: lacp`): LACP's own
    # proposals of the video join the detector's detections, each score of both times the video
    # score of its class, and one more per-class Soft-NMS with the settings above picks from both
    # (`detector.postprocess.merge_detections`): each instance keeps whichever model bounds it
    # better. False: the detector's detections alone. True: chosen on the validation videos of
    # both synthetic families (docs/STUDIES.md).
    lacp_proposals: bool = Field(True, description="LACP's proposals join the detections before a last Soft-NMS")
    # With a folder that fuses LACP's video scores (`selftrain.video_scores: lacp`), how the detector's
    # class probabilities and LACP's video scores make a location's score for class c:
    # best^(1 - w) * p_c^w * video_score_c, with p_c the location's probability of c, best its
    # highest (its actionness) and w this weight. 1: the detector classifies (each class's own
    # probability, ActionFormer's); 0: the detector only localises and LACP classifies
    # (ActionFormer's recipe with an external video classifier). 0.25 was chosen on the validation
    # videos of both synthetic families (docs/STUDIES.md): the detector, trained on a few dozen
    # videos, tells classes apart worse than LACP on one and better on the other.
    own_class_weight: float = Field(
        0.25,
        ge=0,
        le=1,
        description="a location's class-c score: best^(1-w) * p_c^w * LACP's video score of c (1: the detector's own)",
    )

    def settings_needing_lacp(self) -> list[str]:
        """These settings that apply the LACP model a detector folder may carry (`selftrain.video_scores:
        lacp`), each as `key: value`; none means the detector's detections stand alone."""
        needing = ["lacp_proposals: true"] if self.lacp_proposals else []
        return needing + ([f"own_class_weight: {self.own_class_weight:g}"] if self.own_class_weight < 1 else [])
