"""One module per DVC stage: a params model and a plain `run` function, testable without Prefect."""

STAGE_NAMES = (
    "prepare",
    "decode",
    "flow",
    "weights",
    "extract",
    "points",
    "train",
    "evaluate",
    "analyze",
    "pseudo",
    "selftrain",
    "evaluate_selftrain",
)
"""The DVC stages, in DAG order: dvc.yaml's stages, `python -m pipeline run`'s choices and the
Prefect flows (tests/test_pipeline_code_deps.py checks that dvc.yaml and the flows agree)."""

STAGE_MODULES = {name: name for name in STAGE_NAMES} | {"evaluate_selftrain": "evaluate"}
"""The module of `stages` each stage runs: its own, but evaluate_selftrain runs the evaluate
stage's code on the self-trained detector's folder (one evaluator for both models)."""
