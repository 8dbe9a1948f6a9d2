#!/usr/bin/env bash
# The prepared GPU check (bench/gpu_check.py says what it measures). On the GPU machine, from the
# repository root, with the bundle that `python -m bench.gpu_check pack` wrote here in .gpu/:
#     bash bench/gpu_check.sh            # device tool: run(command="bash bench/gpu_check.sh", carry=[".gpu"])
# It installs the bundled wheels only where the packages are missing, runs the CUDA-marked tests,
# then the check; the JSON also lands in $OUT/gpu_check.json when $OUT is set. About 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
if ! "$PY" -c "import pydantic" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-check-site .gpu/wheels/*.whl
    export PYTHONPATH=/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -m pytest -q -m cuda -p no:cacheprovider tests/test_features_i3d.py tests/test_lacp_trainer.py tests/test_features_tvl1.py
"$PY" -m bench.gpu_check run ${OUT:+--out "$OUT"}
