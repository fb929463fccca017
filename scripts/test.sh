#!/usr/bin/env bash
# Install everything the test suite needs on a fresh Debian machine (as root), then run it all.
# This is the README's test command and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# PyTorch: the pinned CPU build first, so the `train` extra's requirement is already met
# and pip never resolves an unpinned torch to a multi-GB CUDA build.
"$PY" -m pip install --quiet torch==2.13.0
"$PY" -m pip install --quiet -e ".[train,dev,cluster,rtl,fpga,nir]"
# Icarus Verilog for the RTL co-simulation (tests/test_rtl_*.py fail without it under SPIKEFORGE_REQUIRE_PEERS).
command -v iverilog >/dev/null || { apt-get update && apt-get install -y iverilog; }

# SANA-FE, the peer simulator of tests/test_peer_sanafe.py, in its own venv so its pins never meet ours.
PEERS=${SANAFE_VENV:-.peers-venv}
if [ ! -x "$PEERS/bin/python" ]; then
    "$PY" -m venv "$PEERS"
fi
"$PEERS/bin/python" -m pip install --quiet sanafe==2.2.9 numpy
# Brian2 2.9 (benchmark peer; its runner's tests compile C++ with g++), in its own venv: it needs numpy < 2.4.
B2=${BRIAN2_VENV:-.brian2-venv}
if [ ! -x "$B2/bin/python" ]; then
    "$PY" -m venv "$B2"
fi
"$B2/bin/python" -m pip install --quiet brian2==2.9.0 "numpy<2.4"
command -v g++ >/dev/null || { apt-get update && apt-get install -y g++; }
# snnTorch, the real NIR client of tests/test_nir.py (its exporter works with nir 1.0.4 and nirtorch 1.0),
# in its own venv with the pinned CPU torch first.
NV=${NIR_VENV:-.nir-venv}
if [ ! -x "$NV/bin/python" ]; then
    "$PY" -m venv "$NV"
fi
"$NV/bin/python" -m pip install --quiet torch==2.13.0
"$NV/bin/python" -m pip install --quiet snntorch==0.9.4 nir==1.0.4 nirtorch==1.0
export SANAFE_PYTHON="$PWD/$PEERS/bin/python" BRIAN2_PYTHON="$PWD/$B2/bin/python" SNNTORCH_PYTHON="$PWD/$NV/bin/python"
export SPIKEFORGE_REQUIRE_PEERS=1

"$PY" -m ruff check .
"$PY" -m ruff format --check .
# pytest exits non-zero on any failure, and with 5 when it collected no test: both fail here.
"$PY" -m pytest "$@"
