"""One module per DVC stage: a params model and a plain `run` function, testable without Prefect."""
