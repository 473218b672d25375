#!/usr/bin/env bash
# The device check in one command: install pst_fast from this checkout, then run every check (scripts/device_check.py).
#   scripts/device_check.sh OUT     -> OUT/device_check.json, OUT/device_check.md, OUT/device_check.log, OUT/bench.json
# On a CUDA machine it checks the GPU path (about 8 minutes on one H200, install included); without CUDA it runs the same
# checks shrunk to a CPU mode. Needs torch, triton, numpy, pillow, matplotlib, tqdm, pybind11 and ninja installed (no
# package index is used); the ImageNet check reads .device-data/ (scripts/device_data.sh fills it).
# PYTHON (default python3) picks the interpreter; PST_FAST_INSTALL=0 skips the install; extra arguments go to the script.
# Exits non-zero when the install or any check fails.
set -euo pipefail
out=${1:?usage: scripts/device_check.sh OUT [--only a,b] [--mode auto|cuda|cpu] [--budget SECONDS]}
shift
mkdir -p "$out" && out=$(cd "$out" && pwd)  # OUT is relative to the caller's directory
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
start=$(date +%s)
export PST_FAST_CHECK_START=$start  # the checks' time budget counts from here
if [ "${PST_FAST_INSTALL:-1}" != 0 ]; then
    "$python" -m pip install -q --no-deps --no-build-isolation -e . > "$out/install.log" 2>&1 \
        || { tail -20 "$out/install.log"; echo "device_check: pip install -e . failed (log: $out/install.log)" >&2; exit 2; }
    echo "device_check: installed pst_fast in $(( $(date +%s) - start )) s"
fi
exec "$python" scripts/device_check.py "$out" "$@"
