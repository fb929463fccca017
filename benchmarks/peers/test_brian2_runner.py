"""Checks of the Brian2 (cpp_standalone) peer runner against plain-numpy / hand-computed expectations.

Run from the repository root with our venv:  /work/venv/bin/python -m pytest -q benchmarks/peers/test_brian2_runner.py
Brian2 runs in its own venv (/work/brian2-venv, or $BRIAN2_PYTHON) through a subprocess; the tests that need it
are skipped when that interpreter is missing. Each of them compiles one Brian2 project (~20-25 s on 1-2 cores).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import brian2_runner as br  # noqa: E402

B2_PYTHON = os.environ.get("BRIAN2_PYTHON", br.BRIAN2_PYTHON)
if os.environ.get("SPIKEFORGE_REQUIRE_PEERS") and not Path(B2_PYTHON).exists():
    raise RuntimeError(f"Brian2 interpreter {B2_PYTHON} missing but SPIKEFORGE_REQUIRE_PEERS is set.")
needs_brian2 = pytest.mark.skipif(not Path(B2_PYTHON).exists(), reason=f"{B2_PYTHON} missing (Brian2 venv)")

# (a) 6 inputs -> 4 IF neurons, T = 5 input rows, 7 steps; neuron 3 has no synapses and threshold 0
W_A = [
    [1, 2, 0, 0, -1, 3],
    [0, 1, 1, 0, 0, 0],
    [2, 0, 0, 2, 0, 0],
    [0, 0, 0, 0, 0, 0],
]
THR_A = [3, 1, 2, 0]
IN_A = [  # [t][input]
    [1, 0, 0, 1, 0, 0],
    [1, 1, 0, 0, 0, 1],
    [0, 0, 0, 0, 1, 0],
    [1, 1, 1, 1, 1, 1],
    [0, 1, 0, 0, 0, 0],
]
STEPS_A = 7
# Worked by hand. A spike at step t is integrated at step t + 1: I(t) = W_A @ s(t - 1)
#   I(1) = [1, 0, 4, 0]  I(2) = [6, 1, 2, 0]  I(3) = [-1, 0, 0, 0]  I(4) = [5, 2, 4, 0]  I(5) = [2, 1, 0, 0]  I(6) = 0
# v after input -> fired -> v after reset (fire when v >= threshold, then v -= threshold; threshold 0 fires always):
#   t0: [0, 0, 0, 0] -> 3        -> [0, 0, 0, 0]
#   t1: [1, 0, 4, 0] -> 2 3      -> [1, 0, 2, 0]
#   t2: [7, 1, 4, 0] -> 0 1 2 3  -> [4, 0, 2, 0]   (neuron 0: v = 7 > 2 * threshold still fires once)
#   t3: [3, 0, 2, 0] -> 0 2 3    -> [0, 0, 0, 0]   (v == threshold fires)
#   t4: [5, 2, 4, 0] -> 0 1 2 3  -> [2, 1, 2, 0]
#   t5: [4, 2, 2, 0] -> 0 1 2 3  -> [1, 1, 0, 0]   (the last input row, t = 4, lands here)
#   t6: [1, 1, 0, 0] -> 1 3      -> [1, 0, 0, 0]
EXPECTED_A = [[0, 3], [1, 2], [1, 3], [2, 0], [2, 1], [2, 2], [2, 3], [3, 0], [3, 2], [3, 3]]
EXPECTED_A += [[4, 0], [4, 1], [4, 2], [4, 3], [5, 0], [5, 1], [5, 2], [5, 3], [6, 1], [6, 3]]
# out-degree (non-zero weights) of inputs 0..5: [2, 2, 1, 1, 1, 1]; events per row: 3, 5, 1, 8, 2
EVENTS_A = 19


def reference(weight, threshold, spikes, steps):
    """Independent plain-Python loop of the semantics: returns sorted [step, neuron] pairs."""
    n_dst, n_src = len(weight), len(weight[0])
    v = [0] * n_dst
    out = []
    for t in range(steps):
        if 1 <= t <= len(spikes):
            for i in range(n_src):
                if spikes[t - 1][i]:
                    for j in range(n_dst):
                        v[j] += int(weight[j][i])
        for j in range(n_dst):
            if v[j] >= threshold[j]:
                v[j] -= int(threshold[j])
                out.append([t, j])
    return out


def write_npz(path, weight, threshold, spikes, steps):
    np.savez(
        path,
        weight=np.asarray(weight, dtype=np.int8),
        threshold=np.asarray(threshold, dtype=np.int64),
        spikes=np.asarray(spikes, dtype=np.uint8),
        steps=np.int64(steps),
    )
    return path


def random_net(seed=7, n_src=50, n_dst=30, T=6, steps=9):
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, size=(n_dst, n_src))
    w[rng.random(w.shape) < 0.3] = 0  # zero weights: with include_zero they still make synapses
    th = rng.integers(60, 500, size=n_dst)
    th[:3] = [1, 0, -5]  # tiny, zero and negative thresholds
    sp = (rng.random((T, n_src)) < 0.3).astype(np.uint8)
    return w, th, sp, steps


# ---------------------------------------------------------------------------------------------------
# Plain Python / numpy (no Brian2)


def test_hand_example_reference():
    assert reference(W_A, THR_A, IN_A, STEPS_A) == EXPECTED_A
    assert br.numpy_reference(W_A, THR_A, IN_A, STEPS_A) == EXPECTED_A
    mask = br.synapse_mask(np.array(W_A), include_zero=False)
    c = br.event_counts(np.array(IN_A, dtype=bool), mask, STEPS_A)
    assert c == {"input_spikes": 13, "synaptic_events": EVENTS_A, "synaptic_events_delivered": EVENTS_A}
    # with steps == T the last row (input 1 -> 2 synapses) is never integrated
    assert br.event_counts(np.array(IN_A, dtype=bool), mask, 5)["synaptic_events_delivered"] == EVENTS_A - 2


def test_numpy_reference_matches_loop():
    w, th, sp, steps = random_net(seed=11)
    assert br.numpy_reference(w, th, sp, steps) == reference(w.tolist(), th.tolist(), sp.tolist(), steps)


def test_validation(tmp_path):
    ok = dict(weight=np.zeros((2, 3), np.int8), threshold=np.ones(2, np.int64), spikes=np.zeros((2, 3), np.uint8))
    br.validate(**ok, steps=np.int64(2))
    with pytest.raises(ValueError, match="steps"):
        br.validate(**ok, steps=np.int64(1))
    with pytest.raises(ValueError, match="8-bit"):
        br.validate(**{**ok, "weight": np.full((2, 3), 200)}, steps=3)
    with pytest.raises(ValueError, match="0/1"):
        br.validate(**{**ok, "spikes": np.full((2, 3), 2, np.uint8)}, steps=3)
    with pytest.raises(ValueError, match="threshold"):
        br.validate(**{**ok, "threshold": np.ones(3, np.int64)}, steps=3)
    with pytest.raises(ValueError, match="integer"):
        br.validate(**{**ok, "weight": np.zeros((2, 3))}, steps=3)
    np.savez(tmp_path / "bad.npz", weight=ok["weight"], threshold=ok["threshold"])
    with pytest.raises(ValueError, match="missing"):
        br.load_net(tmp_path / "bad.npz")


# ---------------------------------------------------------------------------------------------------
# Brian2 (one compile per test)


@needs_brian2
def test_hand_example_brian2(tmp_path):
    path = write_npz(tmp_path / "a.npz", W_A, THR_A, IN_A, STEPS_A)
    res = br.run_brian2_subprocess(path, python=B2_PYTHON, repeat=2, check=True, timeout=900)
    assert res["peer"] == "brian2"
    assert (res["n_src"], res["n_dst"], res["steps"], res["T"]) == (6, 4, STEPS_A, 5)
    assert res["n_synapses"] == 8
    assert res["raster"] == EXPECTED_A
    assert res["spike_count"] == len(EXPECTED_A)
    assert res["synaptic_events"] == res["synaptic_events_delivered"] == EVENTS_A
    assert res["input_spikes"] == 13
    # Brian2's own count of delivered events (on_pre counter) and its input raster
    assert res["checks"] == {
        "repeats_identical": True,
        "synaptic_events_brian2": EVENTS_A,
        "synaptic_events_delivered_match": True,
        "inputs_as_given": True,
    }
    w = res["wall_s"]
    assert len(w["sim_runs"]) == len(w["binary_runs"]) == 2
    assert 0 <= w["sim"] <= w["binary"] <= w["run_total"]
    assert w["build"] == pytest.approx(w["construct"] + w["compile"])


@needs_brian2
def test_random_net_with_zero_weights_brian2(tmp_path):
    w, th, sp, steps = random_net()
    path = write_npz(tmp_path / "r.npz", w, th, sp, steps)
    res = br.run_brian2_subprocess(
        path, python=B2_PYTHON, include_zero=True, check=True, synapse_order="post", timeout=900
    )
    expected = reference(w.tolist(), th.tolist(), sp.tolist(), steps)
    assert len(expected) > 20  # the net is not silent
    assert res["raster"] == expected
    n_dst = w.shape[0]
    events = int(sp.sum()) * n_dst  # every input reaches every neuron (zero weights included)
    assert res["n_synapses"] == w.size
    assert res["synaptic_events"] == res["synaptic_events_delivered"] == events
    assert res["checks"]["synaptic_events_brian2"] == events
    assert res["checks"]["inputs_as_given"] and res["checks"]["repeats_identical"]
    assert res["include_zero_weights"] is True and res["synapse_order"] == "post"
