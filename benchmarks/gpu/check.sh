#!/usr/bin/env bash
# The GPU check of issue 16 in one command (see benchmarks/gpu/check.py for the steps and the files):
#
#   bash benchmarks/gpu/check.sh [OUT] [--budget-s 470] [--only softmax,quant] [--dry-run]
#
# On the lent GPU machine, with the wheels downloaded here first (bash benchmarks/gpu/wheels.sh):
#   run(command="GPU_CHECK_WORK=/tmp/gpu-check bash benchmarks/gpu/check.sh \"$OUT\"", carry=[".whl"], timeout_s=540)
# The interpreter: $HARNESS_GPU_PYTHON, else .venv/bin/python, else python3 (the lent machine's torch Python).
set -uo pipefail
cd "$(dirname "$0")/../.."
python="${HARNESS_GPU_PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
exec "$python" benchmarks/gpu/check.py --python "$python" "$@"
