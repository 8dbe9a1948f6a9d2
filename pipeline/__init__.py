"""Orchestration: the CLI, the params schema, one Prefect flow per DVC stage, studies."""
