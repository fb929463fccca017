"""Checks of the SANA-FE peer runner against hand-computed expectations on tiny networks.

Run from the repository root with our venv:  /work/venv/bin/python -m pytest -q benchmarks/peers/test_sanafe_runner.py
SANA-FE itself runs in the peers venv (/work/peers-venv, or $SANAFE_PYTHON) through a subprocess; the tests are
skipped when that interpreter is missing.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import sanafe_runner as sr  # noqa: E402

if os.environ.get("SPIKEFORGE_REQUIRE_PEERS") and not Path(sr.PEERS_PYTHON).exists():
    raise RuntimeError(f"SANA-FE interpreter {sr.PEERS_PYTHON} missing but SPIKEFORGE_REQUIRE_PEERS is set.")
pytestmark = pytest.mark.skipif(not Path(sr.PEERS_PYTHON).exists(), reason=f"{sr.PEERS_PYTHON} missing (peers venv)")

# distinct per-event costs (pJ / ns) so that every term of every sum is visible
COSTS = {
    "e_synapse_pJ": 1.0,
    "t_synapse_ns": 1.0,
    "e_dendrite_pJ": 0.5,
    "t_dendrite_ns": 0.25,
    "e_soma_access_pJ": 1.5,
    "t_soma_access_ns": 1.0,
    "e_soma_update_pJ": 2.0,
    "t_soma_update_ns": 2.0,
    "e_spike_out_pJ": 3.0,
    "t_spike_out_ns": 3.0,
    "e_msg_out_pJ": 6.0,
    "t_msg_out_ns": 6.0,
    "e_msg_in_pJ": 5.0,
    "t_msg_in_ns": 5.0,
    "e_hop_ew_pJ": 4.0,
    "t_hop_ew_ns": 40.0,
    "e_hop_ns_pJ": 7.0,
    "t_hop_ns_ns": 70.0,
    "t_sync_ns": 100.0,
}

# (a) 4 inputs -> 3 IF neurons, reset by subtraction, v0 = 0
W_A = [[1, 2, 0], [1, -1, 2], [0, 1, 1], [2, 1, -1]]
THR_A = [2, 3, 2]
BIAS_A = [0, 0, 1]
IN_A = [[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]]  # [t][i]; t = 6 silent
# Worked by hand. A spike sent at step t is integrated at step t + 1: I(t+1) = s(t) @ W_A
#   I(1) = [3, 3, -1]  I(2) = [2, 1, 2]  I(3) = [0, 1, 1]  I(4) = [4, 3, 2]  I(5) = [0, 0, 0]  I(6) = [1, -1, 2]
# v before threshold (bias 1 on neuron 2 every step) -> spikes -> v after:
#   t0: [0, 0, 1]  -> 0 0 0 -> [0, 0, 1]
#   t1: [3, 3, 1]  -> 1 1 0 -> [1, 0, 1]      (neuron 1: v == threshold fires)
#   t2: [3, 1, 4]  -> 1 0 1 -> [1, 1, 2]      (neuron 2: v = 2 * threshold still fires once)
#   t3: [1, 2, 4]  -> 0 0 1 -> [1, 2, 2]
#   t4: [5, 5, 5]  -> 1 1 1 -> [3, 2, 3]
#   t5: [3, 2, 4]  -> 1 0 1 -> [1, 2, 2]
#   t6: [2, 1, 5]  -> 1 0 1 -> [0, 1, 3]
EXPECTED_A = [[0, 0, 0], [1, 1, 0], [1, 0, 1], [0, 0, 1], [1, 1, 1], [1, 0, 1], [1, 0, 1]]
V_AFTER_A = [[0, 0, 1], [1, 0, 1], [1, 1, 2], [1, 2, 2], [3, 2, 3], [1, 2, 2], [0, 1, 3]]


def net_a(cols=2, rows=1):
    return {
        "tiles": {"cols": cols, "rows": rows},
        "costs": COSTS,
        "inputs": {"size": 4, "core": [0, 0], "spikes": IN_A},
        "layers": [{"size": 3, "threshold": THR_A, "bias": BIAS_A, "core": [1, 0]}],
        "connections": [{"src": "input", "dst": 0, "weights": W_A}],
    }


# (b)-(e) 2x2 mesh, tile (x, y): inputs on (0, 0) -> layer A (4 neurons on (1,0), (1,0), (0,1), (1,1))
#          -> layer B (2 neurons on (0, 0) and (1, 1)); zero weights included
A_CORES = [[1, 0], [1, 0], [0, 1], [1, 1]]
B_CORES = [[0, 0], [1, 1]]
W_IN_A = [[2, 0, 1, 1], [1, 2, 0, 2], [0, 1, 2, 1], [1, 1, 1, 0]]
W_A_B = [[2, 1], [1, 0], [2, 2], [0, 3]]
IN_MESH = [[1, 1, 0, 0], [0, 1, 1, 1], [1, 0, 1, 0], [1, 1, 1, 1], [0, 0, 1, 0], [0, 0, 0, 0]]


def net_mesh(prune=False):
    return {
        "tiles": {"cols": 2, "rows": 2},
        "costs": COSTS,
        "inputs": {"size": 4, "core": [0, 0], "spikes": IN_MESH},
        "layers": [
            {"size": 4, "threshold": 2, "bias": 0, "core": A_CORES, "name": "A"},
            {"size": 2, "threshold": 3, "bias": [0, 1], "core": B_CORES, "name": "B"},
        ],
        "connections": [{"src": "input", "dst": 0, "weights": W_IN_A}, {"src": 0, "dst": 1, "weights": W_A_B}],
        "options": {"prune_zero_weights": prune, "message_trace": True},
    }


def run(net, steps):
    return sr.run_sanafe_subprocess(net, steps)


# ---------------------------------------------------------------------------------------------------
# An independent reference: reset-by-subtraction IF with SANA-FE's schedule (used for (d), (e), random nets)


def reference(net, steps):
    """Spikes, updated neurons and per-core event counts, step by step, the way SANA-FE schedules them:
    inputs fire at their step; a spike sent at step t is integrated at t + 1; v += bias + input; fire when
    v >= threshold, then v -= threshold. A neuron is 'updated' when v != 0 before the step, a synapse
    delivered input (zero weights too) or bias != 0."""
    prune = net.get("options", {}).get("prune_zero_weights", False)
    layers = net["layers"]
    n_in = net["inputs"]["size"]

    def cores(core, n):
        return [tuple(core)] * n if len(core) == 2 and isinstance(core[0], int) else [tuple(c) for c in core]

    def vec(v, n):
        return list(v) if isinstance(v, list) else [v] * n

    gc = {"input": cores(net["inputs"]["core"], n_in)}
    for li, g in enumerate(layers):
        gc[li] = cores(g["core"], g["size"])
    thr = [vec(g["threshold"], g["size"]) for g in layers]
    bias = [vec(g.get("bias", 0), g["size"]) for g in layers]
    v = [[0] * g["size"] for g in layers]
    spk_in = [[0] * n_in for _ in range(steps)]
    for t, row in enumerate(net["inputs"]["spikes"][:steps]):
        spk_in[t] = list(row)
    raster = [[[0] * g["size"] for _ in range(steps)] for g in layers]
    prev = {"input": [0] * n_in, **{li: [0] * g["size"] for li, g in enumerate(layers)}}
    steps_out = []
    for t in range(steps):
        cur = [[0] * g["size"] for g in layers]
        got = [[False] * g["size"] for g in layers]
        for c in net["connections"]:
            src = "input" if c["src"] in ("input", -1) else c["src"]
            for i, s in enumerate(prev[src]):
                if s:
                    for j, w in enumerate(c["weights"][i]):
                        if prune and w == 0:
                            continue
                        cur[c["dst"]][j] += w
                        got[c["dst"]][j] = True
        upd = {}  # per core: (updated, fired) layer neurons
        acc = {}  # per core: number of layer neurons mapped
        fired_now = {"input": spk_in[t]}
        for li, g in enumerate(layers):
            f = [0] * g["size"]
            for j in range(g["size"]):
                core = gc[li][j]
                acc[core] = acc.get(core, 0) + 1
                updated = v[li][j] != 0 or got[li][j] or bias[li][j] != 0
                v[li][j] += bias[li][j] + cur[li][j]
                if v[li][j] >= thr[li][j]:
                    v[li][j] -= thr[li][j]
                    f[j] = 1
                u, fi = upd.get(core, (0, 0))
                upd[core] = (u + (updated or f[j]), fi + f[j])
            raster[li][t] = f
            fired_now[li] = f
        # messages, synaptic events and hops sent this step, per source / destination core
        out_msgs, in_msgs, in_syn = {}, {}, {}
        syn = ew = ns = 0
        for c in net["connections"]:
            src = "input" if c["src"] in ("input", -1) else c["src"]
            for i, s in enumerate(fired_now[src]):
                if not s:
                    continue
                for j, w in enumerate(c["weights"][i]):
                    if prune and w == 0:
                        continue
                    syn += 1
                    d = gc[c["dst"]][j]
                    in_syn[d] = in_syn.get(d, 0) + 1
        for src, fired in fired_now.items():
            for i, s in enumerate(fired):
                if not s:
                    continue
                dests = set()
                for c in net["connections"]:
                    if ("input" if c["src"] in ("input", -1) else c["src"]) != src:
                        continue
                    for j, w in enumerate(c["weights"][i]):
                        if not (prune and w == 0):
                            dests.add(gc[c["dst"]][j])
                x, y = gc[src][i]
                for d in dests:
                    out_msgs[(x, y)] = out_msgs.get((x, y), 0) + 1
                    in_msgs[d] = in_msgs.get(d, 0) + 1
                    ew += abs(d[0] - x)
                    ns += abs(d[1] - y)
        steps_out.append(
            {
                "syn": syn,
                "packets": sum(out_msgs.values()),
                "ew": ew,
                "ns": ns,
                "updated": sum(u for u, _ in upd.values()),
                "fired_layers": sum(f for _, f in upd.values()),
                "fired_inputs": sum(spk_in[t]),
                "cores": {"acc": acc, "upd": upd, "out": out_msgs, "in": in_msgs, "in_syn": in_syn},
            }
        )
        prev = fired_now
    return raster, steps_out


def expected_energy(ref_steps, n_layer_neurons, c=COSTS):
    """Energy per step (pJ) = counts x costs."""
    out = []
    for s in ref_steps:
        e = {
            "synapse": s["syn"] * c["e_synapse_pJ"],
            "dendrite": s["syn"] * c["e_dendrite_pJ"],
            "soma": n_layer_neurons * c["e_soma_access_pJ"]
            + s["updated"] * c["e_soma_update_pJ"]
            + s["fired_layers"] * c["e_spike_out_pJ"],
            "network": s["packets"] * (c["e_msg_out_pJ"] + c["e_msg_in_pJ"])
            + s["ew"] * c["e_hop_ew_pJ"]
            + s["ns"] * c["e_hop_ns_pJ"],
        }
        e["total"] = sum(e.values())
        out.append(e)
    return out


def expected_latency(ref_steps, c=COSTS):
    """'simple' timing model: max over cores of (neuron work + messages out) and of (messages in + synaptic
    work), plus the fixed sync; hop latency is not counted."""
    out = []
    for s in ref_steps:
        k = s["cores"]
        cores = set(k["acc"]) | set(k["out"]) | set(k["in"])
        worst = 0.0
        for core in cores:
            u, f = k["upd"].get(core, (0, 0))
            send = (
                k["acc"].get(core, 0) * c["t_soma_access_ns"]
                + u * c["t_soma_update_ns"]
                + f * c["t_spike_out_ns"]
                + k["out"].get(core, 0) * c["t_msg_out_ns"]
            )
            recv = k["in"].get(core, 0) * c["t_msg_in_ns"] + k["in_syn"].get(core, 0) * (
                c["t_synapse_ns"] + c["t_dendrite_ns"]
            )
            worst = max(worst, send, recv)
        out.append(worst + c["t_sync_ns"])
    return out


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# ---------------------------------------------------------------------------------------------------
# (a) spikes per step, exactly


def test_a_spikes_match_hand_computation():
    net = net_a()
    net["options"] = {"potential_trace": True}
    r = run(net, 7)
    assert r["spikes"] == [EXPECTED_A]
    assert r["input_spikes"] == IN_A + [[0, 0, 0, 0]]
    assert r["potentials"] == [V_AFTER_A]
    # neurons_fired counts the input-source spikes too
    assert r["per_step"]["neurons_fired_layers"] == [sum(s) for s in EXPECTED_A]
    assert r["per_step"]["neurons_fired_inputs"] == [sum(s) for s in IN_A] + [0]
    assert r["per_step"]["neurons_fired"] == [sum(a) + sum(b) for a, b in zip(EXPECTED_A, IN_A + [[0] * 4])]
    assert all(r["checks"].values()), r["checks"]
    # the independent reference agrees with the hand computation
    assert reference(net, 7)[0] == [EXPECTED_A]


def test_a_delay_one_step_per_layer_and_fires_at_equality():
    # input spike at t = 0 -> L0 (weight == threshold) fires at t = 1 -> L1 fires at t = 2
    net = {
        "tiles": {"cols": 1, "rows": 1},
        "costs": COSTS,
        "inputs": {"size": 1, "core": [0, 0], "spikes": [[1]]},
        "layers": [{"size": 2, "threshold": [3, 4], "core": [0, 0]}, {"size": 1, "threshold": 3, "core": [0, 0]}],
        "connections": [{"src": "input", "dst": 0, "weights": [[3, 3]]}, {"src": 0, "dst": 1, "weights": [[3], [0]]}],
        "options": {"potential_trace": True},
    }
    r = run(net, 4)
    assert r["spikes"] == [[[0, 0], [1, 0], [0, 0], [0, 0]], [[0], [0], [1], [0]]]
    assert r["potentials"][0] == [[0, 0], [0, 3], [0, 3], [0, 3]]  # v == 3 < 4 holds, v == 3 >= 3 fired


# ---------------------------------------------------------------------------------------------------
# (b) packets, (c) hops


# destination cores per source neuron, worked out from the placement (dense: zero weights make synapses too)
#   input (0,0) -> A cores {(1,0), (0,1), (1,1)}: 3 messages, hops 1 + 1 + 2 = 4 (E-W 2, N-S 2)
#   A0, A1 (1,0) -> B cores {(0,0), (1,1)}: 2 messages, hops 1 (E-W) + 1 (N-S)
#   A2 (0,1)     -> {(0,0), (1,1)}: 2 messages, hops 1 (N-S) + 1 (E-W)
#   A3 (1,1)     -> {(0,0), (1,1)}: 2 messages, hops 2 (1 E-W, 1 N-S) + 0 (same tile)
#   B: no outgoing connections
def test_b_c_packets_and_hops_dense():
    r = run(net_mesh(), 6)
    ps = r["per_step"]
    n_in = [sum(s) for s in IN_MESH]
    n_a = [sum(s) for s in r["spikes"][0]]
    assert ps["packets_sent"] == [3 * i + 2 * a for i, a in zip(n_in, n_a)]
    assert ps["hops"] == [4 * i + 2 * a for i, a in zip(n_in, n_a)]
    assert ps["hops_ew"] == [2 * i + 1 * a for i, a in zip(n_in, n_a)]
    assert ps["hops_ns"] == [2 * i + 1 * a for i, a in zip(n_in, n_a)]
    # synaptic events: 4 per input spike, 2 per A spike, zero weights included
    assert ps["synaptic_events"] == [4 * i + 2 * a for i, a in zip(n_in, n_a)]
    assert r["totals"]["packets_sent"] == sum(ps["packets_sent"])
    assert sum(n_a) > 0 and all(r["checks"].values()), r["checks"]
    assert r["spikes"] == reference(net_mesh(), 6)[0]


def test_b_c_packets_and_hops_pruned_zero_weights():
    # without zero-weight synapses: input 0 skips A1 (1,0 still reached via A0), input 1 skips A2 -> no (0,1),
    # input 2 skips A0 (A1 on (1,0) stays), input 3 skips A3 -> no (1,1); A1 skips B1, A3 skips B0
    msgs_in = [3, 2, 3, 2]
    hops_in = [(2, 2), (2, 1), (2, 2), (1, 1)]  # (E-W, N-S)
    msgs_a = [2, 1, 2, 1]
    hops_a = [(1, 1), (1, 0), (1, 1), (0, 0)]
    r = run(net_mesh(prune=True), 6)
    ps = r["per_step"]
    raster_a = r["spikes"][0]
    want_pk = [
        sum(m for m, s in zip(msgs_in, IN_MESH[t]) if s) + sum(m for m, s in zip(msgs_a, raster_a[t]) if s)
        for t in range(6)
    ]
    want_ew = [
        sum(h[0] for h, s in zip(hops_in, IN_MESH[t]) if s) + sum(h[0] for h, s in zip(hops_a, raster_a[t]) if s)
        for t in range(6)
    ]
    want_ns = [
        sum(h[1] for h, s in zip(hops_in, IN_MESH[t]) if s) + sum(h[1] for h, s in zip(hops_a, raster_a[t]) if s)
        for t in range(6)
    ]
    assert ps["packets_sent"] == want_pk
    assert ps["hops_ew"] == want_ew and ps["hops_ns"] == want_ns
    assert ps["hops"] == [a + b for a, b in zip(want_ew, want_ns)]
    assert all(r["checks"].values()), r["checks"]
    assert r["spikes"] == reference(net_mesh(prune=True), 6)[0]


# ---------------------------------------------------------------------------------------------------
# (d) energy = counts x costs, (e) simple-model latency


@pytest.mark.parametrize("prune", [False, True])
def test_d_energy_is_counts_times_costs(prune):
    net = net_mesh(prune)
    r = run(net, 6)
    raster, ref = reference(net, 6)
    assert r["spikes"] == raster
    assert r["per_step"]["neurons_updated_layers"] == [s["updated"] for s in ref]
    want = expected_energy(ref, n_layer_neurons=6)
    got = r["per_step"]["energy_pJ"]
    for t in range(6):
        for comp in ("synapse", "dendrite", "soma", "network", "total"):
            assert close(got[comp][t], want[t][comp]), (comp, t, got[comp][t], want[t][comp])
    tot = r["totals"]["energy_pJ"]
    for comp in ("synapse", "dendrite", "soma", "network", "total"):
        assert close(tot[comp], sum(w[comp] for w in want)), comp
    split = r["totals"]["network_energy_split_pJ"]
    assert close(sum(split.values()), tot["network"])


def test_d_energy_single_core_pair():
    net = net_a()
    r = run(net, 7)
    _, ref = reference(net, 7)
    want = expected_energy(ref, n_layer_neurons=3)
    for comp in ("synapse", "dendrite", "soma", "network", "total"):
        assert close(r["totals"]["energy_pJ"][comp], sum(w[comp] for w in want)), comp


def net_wide():
    """4 inputs -> 16 silent neurons on one core: receiving (messages in + synaptic work) dominates."""
    return {
        "tiles": {"cols": 2, "rows": 1},
        "costs": COSTS,
        "inputs": {"size": 4, "core": [0, 0], "spikes": IN_A},
        "layers": [{"size": 16, "threshold": 1000, "core": [1, 0]}],
        "connections": [{"src": "input", "dst": 0, "weights": [[1] * 16] * 4}],
    }


@pytest.mark.parametrize("which", ["a", "mesh", "mesh_pruned", "wide"])
def test_e_simple_latency_formula(which):
    net = {"a": net_a(), "mesh": net_mesh(), "mesh_pruned": net_mesh(True), "wide": net_wide()}[which]
    steps = 6 if which.startswith("mesh") else 7
    r = run(net, steps)
    want = expected_latency(reference(net, steps)[1])
    if which == "wide":  # step 3 (all 4 inputs fired at step 3): 4 x 5 ns in + 64 x (1 + 0.25) ns + 100 ns sync
        assert close(r["per_step"]["latency_ns"][3], 4 * 5 + 64 * 1.25 + 100)
    assert all(close(a, b) for a, b in zip(r["per_step"]["latency_ns"], want)), (r["per_step"]["latency_ns"], want)
    assert close(r["totals"]["latency_ns"], sum(want))


# ---------------------------------------------------------------------------------------------------
# random small multi-layer nets against the reference; the command-line interface


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_nets_match_reference(seed):
    rng = random.Random(seed)
    cols, rows, steps = 3, 2, 10
    tiles = [[x, y] for x in range(cols) for y in range(rows)]
    sizes = [5, 6, 4]
    n_in = 6
    layers = [
        {
            "size": n,
            "threshold": [rng.randint(1, 6) for _ in range(n)],
            "bias": [rng.choice([0, 0, 1, -1]) for _ in range(n)],
            "core": [rng.choice(tiles) for _ in range(n)],
        }
        for n in sizes
    ]
    conns = [{"src": "input", "dst": 0, "weights": [[rng.randint(-2, 4) for _ in range(5)] for _ in range(n_in)]}]
    conns += [{"src": 0, "dst": 1, "weights": [[rng.randint(-3, 4) for _ in range(6)] for _ in range(5)]}]
    conns += [{"src": 1, "dst": 2, "weights": [[rng.randint(-2, 4) for _ in range(4)] for _ in range(6)]}]
    conns += [{"src": 2, "dst": 1, "weights": [[rng.randint(-1, 2) for _ in range(6)] for _ in range(4)]}]  # loop
    net = {
        "tiles": {"cols": cols, "rows": rows},
        "costs": COSTS,
        "inputs": {
            "size": n_in,
            "core": [rng.choice(tiles) for _ in range(n_in)],
            "spikes": [[int(rng.random() < 0.4) for _ in range(n_in)] for _ in range(steps - 2)],
        },
        "layers": layers,
        "connections": conns,
        "options": {"prune_zero_weights": seed == 2, "message_trace": True},
    }
    r = run(net, steps)
    raster, ref = reference(net, steps)
    assert r["spikes"] == raster
    assert all(r["checks"].values()), r["checks"]
    ps = r["per_step"]
    assert ps["synaptic_events"] == [s["syn"] for s in ref]
    assert ps["packets_sent"] == [s["packets"] for s in ref]
    assert ps["hops_ew"] == [s["ew"] for s in ref] and ps["hops_ns"] == [s["ns"] for s in ref]
    assert ps["neurons_updated_layers"] == [s["updated"] for s in ref]
    want = expected_energy(ref, n_layer_neurons=sum(sizes))
    assert all(close(ps["energy_pJ"]["total"][t], want[t]["total"]) for t in range(steps))
    lat = expected_latency(ref)
    assert all(close(a, b) for a, b in zip(ps["latency_ns"], lat))


def test_cli_file_argument_stdout_is_pure_json(tmp_path):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(net_a()))
    proc = subprocess.run(
        [sr.PEERS_PYTHON, str(HERE / "sanafe_runner.py"), str(path), "--steps", "7"],
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.loads(proc.stdout)  # SANA-FE's own progress lines go to stderr
    assert r["spikes"] == [EXPECTED_A]
    assert r["sanafe_version"] == sr.SANAFE_VERSION


def test_potential_trace_order_with_groups_spread_over_cores():
    # bias only, thresholds out of reach: v after step t = (t + 1) * bias; names sort unlike creation order
    net = {
        "tiles": {"cols": 2, "rows": 2},
        "inputs": {"size": 2, "core": [[1, 1], [0, 0]], "spikes": []},
        "layers": [
            {"size": 4, "threshold": 1000, "bias": [1, 2, 3, 4], "core": [[1, 1], [0, 0], [1, 0], [0, 0]], "name": "z"},
            {"size": 3, "threshold": 1000, "bias": [10, 20, 30], "core": [[0, 1], [0, 0], [1, 1]], "name": "L10"},
            {"size": 2, "threshold": 1000, "bias": [100, 200], "core": [[0, 1], [1, 0]], "name": "L2"},
        ],
        "connections": [],
        "options": {"potential_trace": True},
    }
    r = run(net, 2)
    biases = [g["bias"] for g in net["layers"]]
    assert r["potentials"] == [[[b * (t + 1) for b in bs] for t in range(2)] for bs in biases]


def test_misspelled_keys_are_rejected():
    bad = net_a()
    bad["costs"] = {"e_synapse_pj": 1.0}
    with pytest.raises(ValueError, match="unknown cost keys"):
        sr.normalise(bad, 3)
    bad = net_a()
    bad["layers"][0]["treshold"] = 2
    with pytest.raises(ValueError, match="unknown keys"):
        sr.normalise(bad, 3)
    bad = net_a()
    bad["layers"][0]["threshold"] = 2.5
    with pytest.raises(ValueError, match="integers only"):
        sr.normalise(bad, 3)
