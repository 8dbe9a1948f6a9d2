"""One module per DVC stage: a params model and a plain `run` function, testable without Prefect."""

STAGE_NAMES = ("prepare", "decode", "flow", "weights", "extract", "points", "train", "evaluate", "analyze")
"""The DVC stages, in DAG order: dvc.yaml's stages, `python -m pipeline run`'s choices and the
Prefect flows (tests/test_pipeline_code_deps.py checks that dvc.yaml and the flows agree)."""
