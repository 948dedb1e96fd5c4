#!/usr/bin/env bash
# Download, on a machine with a package index, the wheels the GPU machine lacks (benchmarks/gpu/wheels.txt)
# into .whl/ at the repository root, for CPython 3.12 on x86-64 Linux (the lent machine's Python), and keep
# .whl/ out of git. Then carry it in the device call:  run(command=..., carry=[".whl"]).
#
#   bash benchmarks/gpu/wheels.sh            # about 15 MB, well inside the 64 MiB a device call carries
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
mkdir -p .whl
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
python="${PYTHON:-python3}"
requirements=$(grep -v '^\s*#' benchmarks/gpu/wheels.txt | grep -v '^\s*$')
# shellcheck disable=SC2086
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $requirements
ls -1 .whl
du -sh .whl
