"""Dataset sources of the prepare stage.

Each source produces the two prepare artifacts (see docs/ARCHITECTURE.md):

- ``annotations.json``: ``{"database": {vid: {"subset", "duration", "fps", "annotations":
  [{"segment": [s, e], "label", "salient"?}]}}, "classes": [sorted names]}``;
- ``videos.json``: ``{vid: path}``.

Modules:
    synthetic    the embedded dataset: seeded, rendered mp4 videos with known action
                 intervals (gradual onset/offset around a salient peak), built to test
                 whether a point-supervised detector learns action completeness.
    annotations  readers and validation of ActivityNet-style ground truth (``gt.json``),
                 per-video fps files, segment clipping and the atomic annotations writer.
    directory    user videos in a folder + ``gt.json`` (e.g. THUMOS'14): finds the files,
                 reads durations from the containers and references the videos in place.
"""
