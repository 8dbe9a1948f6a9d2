"""A fully-supervised temporal action detector after ActionFormer (Zhang, Wu, Li, ECCV 2022).

Written here from the paper's description, sized for this project's datasets, and trained on
instance-level labels: LACP's pseudo instances (self-training) or the true training instances
(the fully-supervised upper bound). It is not LACP: it shares the feature store
(`features.store`), its time grid (`features.timegrid`), the feature-source helper of
`lacp.batching` and, through the results format of `lacp.proposals.to_results_json`, the
evaluator `lacp.metrics`.

Modules (the order data flows through them):
    config       `DetectorConfig` (network, targets, losses, optimisation) and
                 `InferenceConfig` (decoding, Soft-NMS): every size, with why.
    batching     features of a video read and checked, padded batches, instances in snippets.
    model        `DetectorNet`: conv projection, local-window transformer pyramid, shared heads.
    targets      the pyramid's locations and their classification / regression targets.
    losses       sigmoid focal loss, 1-D DIoU loss, the EMA positive-count normaliser.
    postprocess  per-level candidates, decoding, Gaussian Soft-NMS per class.
    trainer      `train_detector`: seeded, resumable, bit-identical on CPU.
    inference    `predict_detector` / `detect_video`: detections in seconds.
"""
