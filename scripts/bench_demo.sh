#!/usr/bin/env bash
# Time the README's main job as a new user meets it: a fresh venv, `pip install .`, then
# `spikeforge demo` twice (the first run compiles the Numba kernels, the second finds them cached).
# Usage: bash scripts/bench_demo.sh [VENV_DIR]   (default: a temporary directory, removed after)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-$(mktemp -d)/venv}
OUT=$(mktemp -d)
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet .
for run in cold warm; do
    start=$(date +%s.%N)
    "$VENV/bin/spikeforge" demo --out "$OUT/$run" --quiet > "$OUT/$run.txt"
    end=$(date +%s.%N)
    python3 -c "print(f\"demo, $run Numba cache: {$end - $start:.1f} s wall\")"
done
grep -E "accuracy|cycles  |energy \(" "$OUT/warm.txt"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
[ $# -ge 1 ] || rm -rf "$(dirname "$VENV")"
rm -rf "$OUT"
