"""Peer runner: run a plain integrate-and-fire network in SANA-FE (PyPI ``sanafe`` 2.2.9).

SANA-FE is run from its own virtual environment (``/work/peers-venv``, see README.md beside this file)
so that its pins never meet ours. Two ways in:

* ``run_sanafe(net, steps)`` -- in a Python that can ``import sanafe`` (the peers venv);
* ``run_sanafe_subprocess(net, steps)`` -- from any Python (ours): runs this file with the peers venv's
  interpreter, ``python sanafe_runner.py net.json [--steps N]``, which writes the result JSON on stdout.

The net description (``net``, JSON-serialisable) and the result are documented in README.md; in short:

    net = {
      "tiles": {"cols": 2, "rows": 2},            # mesh of tiles, one core each; tile (x, y), 0 <= x < cols
      "costs": {"e_synapse_pJ": 1, ...},          # per-event costs, pJ and ns (COST_KEYS; missing -> 0)
      "inputs": {"size": 4, "core": [[0, 0], ...], "spikes": [[0, 1, 0, 0], ...]},   # spikes[t][i]
      "layers": [{"size": 3, "threshold": 2, "bias": 0, "core": [[1, 0], ...]}, ...],
      "connections": [{"src": "input" | 0, "dst": 0, "weights": [[...n_dst] ...n_src]}],
      "options": {"timing_model": "simple", "prune_zero_weights": False, ...},
    }

Neurons are SANA-FE ``truenorth`` somas with ``reset_mode: soft`` (integrate, fire when v >= threshold,
subtract the threshold), no leak, v0 = 0. Input spikes come from SANA-FE ``input`` soma units (one
unit per source neuron, each holding that neuron's spike train), with zero costs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PEERS_PYTHON = os.environ.get("SANAFE_PYTHON", "/work/peers-venv/bin/python")
SANAFE_VERSION = "2.2.9"

# Per-event costs: energies in pJ, latencies in ns. Each maps onto one SANA-FE architecture attribute.
COST_KEYS = {
    # synapse unit (current_based): per synaptic event (one synapse looked up for one incoming message)
    "e_synapse_pJ": ("synapse", "energy_process_spike"),
    "t_synapse_ns": ("synapse", "latency_process_spike"),
    # dendrite unit (accumulator): per synaptic event as well
    "e_dendrite_pJ": ("dendrite", "energy_update"),
    "t_dendrite_ns": ("dendrite", "latency_update"),
    # soma unit (truenorth): access = every mapped neuron every step; update = every *updated* neuron
    # (v != 0 before the step, any input arrived, or bias != 0); spike_out = every firing neuron
    "e_soma_access_pJ": ("soma", "energy_access_neuron"),
    "t_soma_access_ns": ("soma", "latency_access_neuron"),
    "e_soma_update_pJ": ("soma", "energy_update_neuron"),
    "t_soma_update_ns": ("soma", "latency_update_neuron"),
    "e_spike_out_pJ": ("soma", "energy_spike_out"),
    "t_spike_out_ns": ("soma", "latency_spike_out"),
    # axon out / axon in: per message (one message per firing neuron per destination core)
    "e_msg_out_pJ": ("axon_out", "energy_message_out"),
    "t_msg_out_ns": ("axon_out", "latency_message_out"),
    "e_msg_in_pJ": ("axon_in", "energy_message_in"),
    "t_msg_in_ns": ("axon_in", "latency_message_in"),
    # tile router: per hop; x hops (E-W) and y hops (N-S). Latencies are not used by the "simple" model.
    "e_hop_ew_pJ": ("tile", "energy_east_hop,energy_west_hop"),
    "t_hop_ew_ns": ("tile", "latency_east_hop,latency_west_hop"),
    "e_hop_ns_pJ": ("tile", "energy_north_hop,energy_south_hop"),
    "t_hop_ns_ns": ("tile", "latency_north_hop,latency_south_hop"),
    # fixed time-step synchronisation (barrier) latency, added to every step
    "t_sync_ns": ("arch", "latency_sync"),
}
OPTION_KEYS = {
    "timing_model": "simple",  # "simple" | "detailed" | "cycle"
    "processing_threads": 1,
    "prune_zero_weights": False,  # False: a dense matrix makes every synapse, zero weights included
    "message_trace": False,  # True: also take per-step packets/hops from SANA-FE's message trace
    "potential_trace": False,  # True: return membrane potentials after each step, [group][t][neuron]
}
# SANA-FE 2.2.9 aborts the whole process (std::out_of_range in C++) with more than 1024 neurons that receive
# synapses on one core; inputs (``input`` soma units) are not limited by this, up to 4096 neurons per core.
MAX_LAYER_NEURONS_PER_CORE = 1024
MAX_NEURONS_PER_CORE = 4096
INPUT = "input"


# ---------------------------------------------------------------------------------------------------
# Validation and normalisation (pure Python: usable without sanafe)


def _per_neuron(value, n, what):
    if isinstance(value, list):
        if len(value) != n:
            raise ValueError(f"{what}: {len(value)} values for {n} neurons")
        out = value
    else:
        out = [value] * n
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"{what}: integers only (SANA-FE stores float attributes as float32), got {v!r}")
    return [int(v) for v in out]


def _cores(core, n, cols, rows, what):
    if n == 0:
        return []
    if isinstance(core, list) and len(core) == 2 and all(isinstance(c, int) for c in core):
        core = [core] * n  # one (x, y) for the whole group
    if not isinstance(core, list) or len(core) != n:
        raise ValueError(f"{what}.core: need one (x, y) per neuron ({n}) or a single (x, y)")
    out = []
    for xy in core:
        x, y = int(xy[0]), int(xy[1])
        if not (0 <= x < cols and 0 <= y < rows):
            raise ValueError(f"{what}.core: tile {(x, y)} outside the {cols}x{rows} mesh")
        out.append((x, y))
    return out


def normalise(net: dict, steps: int) -> dict:
    """Check ``net`` strictly (unknown keys are errors: SANA-FE silently ignores misspelled attributes)."""
    unknown = set(net) - {"tiles", "costs", "inputs", "input_spikes", "layers", "connections", "options", "steps"}
    if unknown:
        raise ValueError(f"unknown net keys: {sorted(unknown)}")
    cols, rows = int(net["tiles"]["cols"]), int(net["tiles"]["rows"])
    if cols < 1 or rows < 1:
        raise ValueError("tiles: cols and rows must be >= 1")
    costs = {k: 0 for k in COST_KEYS}
    bad = set(net.get("costs", {})) - set(COST_KEYS)
    if bad:
        raise ValueError(f"unknown cost keys: {sorted(bad)}; known: {sorted(COST_KEYS)}")
    for k, v in net.get("costs", {}).items():
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise ValueError(f"cost {k}: non-negative number expected")
        costs[k] = v
    options = dict(OPTION_KEYS)
    bad = set(net.get("options", {})) - set(OPTION_KEYS)
    if bad:
        raise ValueError(f"unknown option keys: {sorted(bad)}; known: {sorted(OPTION_KEYS)}")
    options.update(net.get("options", {}))

    inp = dict(net.get("inputs") or {"size": 0})
    if "input_spikes" in net:
        inp.setdefault("spikes", net["input_spikes"])
    n_in = int(inp.get("size", 0))
    in_cores = _cores(inp.get("core", [0, 0]), n_in, cols, rows, "inputs")
    spikes = inp.get("spikes", [])
    trains = [[0] * steps for _ in range(n_in)]  # trains[i][t], padded with zeros / cut to `steps`
    for t, row in enumerate(spikes[:steps]):
        if len(row) != n_in:
            raise ValueError(f"inputs.spikes[{t}]: {len(row)} values for {n_in} inputs")
        for i, s in enumerate(row):
            if s not in (0, 1):
                raise ValueError(f"inputs.spikes[{t}][{i}]: 0 or 1 expected")
            trains[i][t] = int(s)

    layers = []
    for li, layer in enumerate(net.get("layers", [])):
        bad = set(layer) - {"size", "threshold", "bias", "core", "name"}
        if bad:
            raise ValueError(f"layers[{li}]: unknown keys {sorted(bad)}")
        n = int(layer["size"])
        layers.append(
            {
                "name": str(layer.get("name", f"L{li}")),
                "size": n,
                "threshold": _per_neuron(layer["threshold"], n, f"layers[{li}].threshold"),
                "bias": _per_neuron(layer.get("bias", 0), n, f"layers[{li}].bias"),
                "core": _cores(layer["core"], n, cols, rows, f"layers[{li}]"),
            }
        )
    names = [g["name"] for g in layers]
    if len(set(names)) != len(names) or INPUT in names:
        raise ValueError(f"layer names must be unique and not {INPUT!r}: {names}")

    def size_of(g):
        return n_in if g == INPUT else layers[g]["size"]

    conns = []
    for ci, c in enumerate(net.get("connections", [])):
        src = INPUT if c["src"] in (INPUT, -1) else int(c["src"])
        dst = int(c["dst"])
        if src != INPUT and not 0 <= src < len(layers):
            raise ValueError(f"connections[{ci}].src: no group {src}")
        if not 0 <= dst < len(layers):
            raise ValueError(f"connections[{ci}].dst: no layer {dst}")
        w = c["weights"]
        ns, nd = size_of(src), size_of(dst)
        if len(w) != ns or any(len(r) != nd for r in w):
            raise ValueError(f"connections[{ci}].weights: need a [{ns}][{nd}] matrix")
        for r in w:
            for v in r:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ValueError(f"connections[{ci}].weights: integers only, got {v!r}")
        conns.append({"src": src, "dst": dst, "weights": w})

    per_core, all_core = {}, {}
    for g in layers:
        for xy in g["core"]:
            per_core[xy] = per_core.get(xy, 0) + 1
            all_core[xy] = all_core.get(xy, 0) + 1
    for xy in in_cores:
        all_core[xy] = all_core.get(xy, 0) + 1
    if max(per_core.values(), default=0) > MAX_LAYER_NEURONS_PER_CORE:
        raise ValueError(f"more than {MAX_LAYER_NEURONS_PER_CORE} layer neurons on one core (SANA-FE would abort)")
    if max(all_core.values(), default=0) > MAX_NEURONS_PER_CORE:
        raise ValueError(f"more than {MAX_NEURONS_PER_CORE} neurons on one core")
    if options["timing_model"] not in ("simple", "detailed", "cycle"):
        raise ValueError(f"timing_model {options['timing_model']!r}")
    return {
        "cols": cols,
        "rows": rows,
        "costs": costs,
        "options": options,
        "inputs": {"size": n_in, "core": in_cores, "trains": trains},
        "layers": layers,
        "connections": conns,
    }


def tile_id(x: int, y: int, rows: int) -> int:
    """SANA-FE numbers tiles column-major: tile id -> (x = id // height, y = id % height)."""
    return x * rows + y


# ---------------------------------------------------------------------------------------------------
# Architecture YAML


def _f(pj_or_ns: float) -> str:
    return f"{float(pj_or_ns) * 1e-12:.17e}"


def _t(ns: float) -> str:
    return f"{float(ns) * 1e-9:.17e}"


def arch_yaml(nn: dict) -> str:
    """One tile entry per tile (ids in order), one core per tile; each core gets one ``input`` soma unit
    per spike-source neuron mapped on it (SANA-FE's input model holds a single spike train per unit)."""
    c, cols, rows = nn["costs"], nn["cols"], nn["rows"]
    n_src = {}
    for xy in nn["inputs"]["core"]:
        n_src[xy] = n_src.get(xy, 0) + 1
    lines = [
        "architecture:",
        "  name: spikeforge_peer",
        f"  attributes: {{width: {cols}, height: {rows}, link_buffer_size: 16, sync_model: fixed, "
        f"latency_sync: {_t(c['t_sync_ns'])}}}",
        "  tile:",
    ]
    hop = (
        f"energy_east_hop: {_f(c['e_hop_ew_pJ'])}, latency_east_hop: {_t(c['t_hop_ew_ns'])}, "
        f"energy_west_hop: {_f(c['e_hop_ew_pJ'])}, latency_west_hop: {_t(c['t_hop_ew_ns'])}, "
        f"energy_north_hop: {_f(c['e_hop_ns_pJ'])}, latency_north_hop: {_t(c['t_hop_ns_ns'])}, "
        f"energy_south_hop: {_f(c['e_hop_ns_pJ'])}, latency_south_hop: {_t(c['t_hop_ns_ns'])}"
    )
    zero = (
        "energy_access_neuron: 0.0, latency_access_neuron: 0.0, energy_update_neuron: 0.0, "
        "latency_update_neuron: 0.0, energy_spike_out: 0.0, latency_spike_out: 0.0"
    )
    for tid in range(cols * rows):
        x, y = divmod(tid, rows)
        k = n_src.get((x, y), 0)
        lines += [
            f"    - name: tile_{x}_{y}",
            f"      attributes: {{{hop}}}",
            "      core:",
            f"        - name: core_{x}_{y}",
            f"          attributes: {{buffer_position: soma, max_neurons_supported: {MAX_NEURONS_PER_CORE}}}",
            "          axon_in:",
            f"            - {{name: ain, attributes: {{energy_message_in: {_f(c['e_msg_in_pJ'])}, "
            f"latency_message_in: {_t(c['t_msg_in_ns'])}}}}}",
            "          synapse:",
            f"            - {{name: syn, attributes: {{model: current_based, energy_process_spike: "
            f"{_f(c['e_synapse_pJ'])}, latency_process_spike: {_t(c['t_synapse_ns'])}}}}}",
            "          dendrite:",
            f"            - {{name: dend, attributes: {{model: accumulator, energy_update: {_f(c['e_dendrite_pJ'])}, "
            f"latency_update: {_t(c['t_dendrite_ns'])}}}}}",
            "          soma:",
            f"            - {{name: ifsoma, attributes: {{model: truenorth, "
            f"energy_access_neuron: {_f(c['e_soma_access_pJ'])}, latency_access_neuron: {_t(c['t_soma_access_ns'])}, "
            f"energy_update_neuron: {_f(c['e_soma_update_pJ'])}, latency_update_neuron: {_t(c['t_soma_update_ns'])}, "
            f"energy_spike_out: {_f(c['e_spike_out_pJ'])}, latency_spike_out: {_t(c['t_spike_out_ns'])}}}}}",
        ]
        if k:
            name = "src[0]" if k == 1 else f"src[0..{k - 1}]"
            lines.append(f"            - {{name: '{name}', attributes: {{model: input, {zero}}}}}")
        lines += [
            "          axon_out:",
            f"            - {{name: aout, attributes: {{energy_message_out: {_f(c['e_msg_out_pJ'])}, "
            f"latency_message_out: {_t(c['t_msg_out_ns'])}}}}}",
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------
# Fan-out bookkeeping: what one spike of each neuron costs in messages, hops and synaptic events


def fanout(nn: dict):
    """Per source neuron: (synaptic events, messages, E-W hops, N-S hops) sent when it fires once.
    Keys: INPUT or layer index; values: four lists over the group's neurons."""
    rows = nn["rows"]
    groups = {INPUT: nn["inputs"]["core"]}
    groups.update({i: g["core"] for i, g in enumerate(nn["layers"])})
    dests = {g: [set() for _ in cores] for g, cores in groups.items()}
    syn = {g: [0] * len(cores) for g, cores in groups.items()}
    prune = bool(nn["options"]["prune_zero_weights"])
    for c in nn["connections"]:
        dcores = groups[c["dst"]]
        for i, row in enumerate(c["weights"]):
            for j, w in enumerate(row):
                if prune and w == 0:
                    continue
                syn[c["src"]][i] += 1
                dests[c["src"]][i].add(dcores[j])
    out = {}
    for g, cores in groups.items():
        msgs, ew, ns = [], [], []
        for i, (x, y) in enumerate(cores):
            d = sorted(dests[g][i], key=lambda xy: tile_id(*xy, rows))
            msgs.append(len(d))
            ew.append(sum(abs(dx - x) for dx, _ in d))
            ns.append(sum(abs(dy - y) for _, dy in d))
        out[g] = (syn[g], msgs, ew, ns)
    return out


# ---------------------------------------------------------------------------------------------------
# Running SANA-FE


def run_sanafe(net: dict, steps: int | None = None) -> dict:
    """Build ``net`` in SANA-FE, simulate ``steps`` time steps, return counts, energies (pJ), latency (ns)
    and spike rasters. Needs ``import sanafe`` (the peers venv); see ``run_sanafe_subprocess`` otherwise."""
    import sanafe  # only in the peers venv

    if steps is None:
        steps = int(net["steps"])
    steps = int(steps)
    nn = normalise(net, steps)
    opts = nn["options"]
    t_build0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sanafe_peer_") as tmp:
        path = Path(tmp) / "arch.yaml"
        path.write_text(arch_yaml(nn))
        arch = sanafe.load_arch(str(path))
    hw_cores = arch.cores()  # global order = tile id order (one core per tile)
    rows = nn["rows"]

    def core_of(xy):
        return hw_cores[tile_id(xy[0], xy[1], rows)]

    net_s = sanafe.Network()
    groups = {}
    n_in = nn["inputs"]["size"]
    if n_in:
        g = net_s.create_neuron_group(INPUT, n_in, log_spikes=True)
        seen = {}
        for i, neuron in enumerate(g):
            xy = nn["inputs"]["core"][i]
            k = seen.get(xy, 0)
            seen[xy] = k + 1
            neuron.set_attributes(soma_hw_name=f"src[{k}]", model_attributes={"spikes": nn["inputs"]["trains"][i]})
            neuron.map_to_core(core_of(xy))
        groups[INPUT] = g
    log_v = bool(opts["potential_trace"])
    for li, layer in enumerate(nn["layers"]):
        th, bias = layer["threshold"], layer["bias"]
        attrs = {"threshold": th[0], "bias": bias[0], "reset_mode": "soft", "leak": 0}
        g = net_s.create_neuron_group(
            layer["name"],
            layer["size"],
            model_attributes=attrs,
            soma_hw_name="ifsoma",
            log_spikes=True,
            log_potential=log_v,
        )
        uniform = len(set(th)) == 1 and len(set(bias)) == 1
        same_core = len(set(layer["core"])) == 1
        for i, neuron in enumerate(g):
            if not uniform and (th[i] != th[0] or bias[i] != bias[0]):
                neuron.set_attributes(model_attributes={"threshold": th[i], "bias": bias[i]})
            if not same_core:
                neuron.map_to_core(core_of(layer["core"][i]))
        if same_core and layer["size"]:
            g.map_to_core(core_of(layer["core"][0]))
        groups[li] = g
    for c in nn["connections"]:
        src, dst, w = groups[c["src"]], groups[c["dst"]], c["weights"]
        if opts["prune_zero_weights"]:
            pairs = [(i, j) for i, r in enumerate(w) for j, v in enumerate(r) if v != 0]
            if pairs:
                src.connect_neurons_sparse(dst, {"w": [int(w[i][j]) for i, j in pairs]}, pairs)
        else:
            src.connect_neurons_dense(dst, {"w": [int(v) for r in w for v in r]})
    chip = sanafe.SpikingChip(arch)
    chip.load(net_s)
    t_build = time.perf_counter() - t_build0

    t0 = time.perf_counter()
    res = chip.sim(
        steps,
        timing_model=opts["timing_model"],
        processing_threads=int(opts["processing_threads"]),
        spike_trace=True,
        perf_trace=True,
        potential_trace=log_v or None,
        message_trace=bool(opts["message_trace"]) or None,
    )
    t_sim = time.perf_counter() - t0
    return _collect(nn, steps, res, t_build, t_sim)


def _collect(nn, steps, res, t_build, t_sim):
    layers = nn["layers"]
    n_in = nn["inputs"]["size"]
    index = {g["name"]: li for li, g in enumerate(layers)}
    raster = [[[0] * g["size"] for _ in range(steps)] for g in layers]
    in_raster = [[0] * n_in for _ in range(steps)]
    for t, fired in enumerate(res["spike_trace"]):
        for a in fired:
            if a.group_name == INPUT:
                in_raster[t][a.neuron_offset] = 1
            else:
                raster[index[a.group_name]][t][a.neuron_offset] = 1

    # derived per-step messages / hops / synaptic events from the rasters and the mapped connectivity
    fo = fanout(nn)
    syn_d, pk_d, ew_d, ns_d = ([0] * steps for _ in range(4))
    for g, (syn, msgs, ew, ns) in fo.items():
        rs = in_raster if g == INPUT else raster[g]
        for t in range(steps):
            row = rs[t]
            for i, s in enumerate(row):
                if s:
                    syn_d[t] += syn[i]
                    pk_d[t] += msgs[i]
                    ew_d[t] += ew[i]
                    ns_d[t] += ns[i]

    perf = res["perf_trace"]
    pj, ns_ = 1e12, 1e9
    fired_in = [sum(r) for r in in_raster]
    fired_layers = [sum(sum(raster[li][t]) for li in range(len(layers))) for t in range(steps)]
    per_step = {
        "neurons_fired": list(perf["fired"]),
        "neurons_fired_inputs": fired_in,
        "neurons_fired_layers": fired_layers,
        "neurons_updated": list(perf["updated"]),
        "neurons_updated_layers": [u - f for u, f in zip(perf["updated"], fired_in)],
        "synaptic_events": list(perf["spikes"]),
        "packets_sent": pk_d,
        "hops": list(perf["hops"]),
        "hops_ew": ew_d,
        "hops_ns": ns_d,
        "energy_pJ": {
            "synapse": [e * pj for e in perf["synapse_energy"]],
            "dendrite": [e * pj for e in perf["dendrite_energy"]],
            "soma": [e * pj for e in perf["soma_energy"]],
            "network": [e * pj for e in perf["network_energy"]],
            "total": [e * pj for e in perf["total_energy"]],
        },
        "latency_ns": [s * ns_ for s in perf["sim_time"]],
    }
    sources = {"packets_sent": "derived", "hops_ew": "derived", "hops_ns": "derived"}
    if res.get("message_trace") is not None:
        pk_m, ew_m, ns_m = [0] * steps, [0] * steps, [0] * steps
        for t, msgs in enumerate(res["message_trace"]):
            for m in msgs:
                if m["placeholder"]:
                    continue
                pk_m[t] += 1
                ew_m[t] += abs(m["dest_x"] - m["src_x"])
                ns_m[t] += abs(m["dest_y"] - m["src_y"])
        per_step.update(packets_sent=pk_m, hops_ew=ew_m, hops_ns=ns_m)
        sources = {k: "message_trace" for k in sources}
    per_step_derived = {"packets_sent": pk_d, "hops_ew": ew_d, "hops_ns": ns_d, "synaptic_events": syn_d}
    c = nn["costs"]
    total_pk, total_ew, total_ns = sum(per_step["packets_sent"]), sum(per_step["hops_ew"]), sum(per_step["hops_ns"])
    totals = {
        "neurons_fired": int(res["neurons_fired"]),
        "neurons_fired_inputs": sum(fired_in),
        "neurons_fired_layers": sum(fired_layers),
        "neurons_updated": int(res["neurons_updated"]),
        "neurons_updated_layers": int(res["neurons_updated"]) - sum(fired_in),
        "synaptic_events": int(res["spikes"]),
        "packets_sent": int(res["packets_sent"]),
        "hops": int(sum(perf["hops"])),
        "hops_ew": total_ew,
        "hops_ns": total_ns,
        "energy_pJ": {k: v * pj for k, v in res["energy"].items()},
        # network energy split by event, from counts x costs (SANA-FE only reports the sum)
        "network_energy_split_pJ": {
            "msg_out": total_pk * c["e_msg_out_pJ"],
            "msg_in": total_pk * c["e_msg_in_pJ"],
            "hops_ew": total_ew * c["e_hop_ew_pJ"],
            "hops_ns": total_ns * c["e_hop_ns_pJ"],
        },
        "latency_ns": float(res["sim_time"]) * ns_,
    }
    checks = {
        "synaptic_events_per_step": syn_d == per_step["synaptic_events"],
        "hops_per_step": [e + n for e, n in zip(per_step["hops_ew"], per_step["hops_ns"])] == per_step["hops"],
        "packets_total": total_pk == totals["packets_sent"],
        "fired_per_step": [a + b for a, b in zip(fired_in, fired_layers)] == per_step["neurons_fired"],
        "derived_equals_message_trace": all(per_step[k] == per_step_derived[k] for k in sources),
        "inputs_as_given": in_raster == [[nn["inputs"]["trains"][i][t] for i in range(n_in)] for t in range(steps)],
    }
    out = {
        "peer": "sanafe",
        "sanafe_version": _version(),
        "steps": steps,
        "timing_model": nn["options"]["timing_model"],
        "totals": totals,
        "per_step": per_step,
        "sources": sources,
        "checks": checks,
        "spikes": raster,  # [layer][t][neuron], 0/1, neuron fired at step t (t = 0 is SANA-FE time-step 1)
        "input_spikes": in_raster,  # [t][i] as SANA-FE fired them
        "group_names": [g["name"] for g in layers],
        "wall_s": {"build": t_build, "sim": t_sim},
    }
    if res.get("potential_trace") is not None:
        out["potentials"] = _potentials(nn, steps, res["potential_trace"])
    return out


def _potentials(nn, steps, trace):
    """SANA-FE lists probed potentials group by group in name order (its groups live in a std::map), each
    group neuron by neuron (checked on a 2x2 mesh with groups spread over cores). Returns [layer][t][neuron]."""
    order = []  # (group name, neuron, layer index)
    for li, g in enumerate(nn["layers"]):
        order += [(g["name"].encode(), i, li) for i in range(g["size"])]
    order.sort()
    out = [[[0.0] * g["size"] for _ in range(steps)] for g in nn["layers"]]
    for t, vals in enumerate(trace):
        for (_, i, li), v in zip(order, vals):
            out[li][t][i] = v
    return out


def _version():
    try:
        from importlib.metadata import version

        return version("sanafe")
    except Exception:
        return "unknown"


# ---------------------------------------------------------------------------------------------------
# Calling it from another Python (ours)


def run_sanafe_subprocess(net: dict, steps: int | None = None, python: str | None = None, timeout: float = 3600):
    """Run ``run_sanafe`` in the peers venv through a subprocess; returns the result dict."""
    python = python or PEERS_PYTHON
    if not Path(python).exists():
        raise FileNotFoundError(f"{python} missing: create the peers venv (benchmarks/peers/README.md)")
    payload = dict(net)
    if steps is not None:
        payload["steps"] = int(steps)
    proc = subprocess.run(
        [python, str(Path(__file__).resolve()), "-"],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"SANA-FE peer failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Run a SpikeForge peer net JSON in SANA-FE; result JSON on stdout.")
    ap.add_argument("net", nargs="?", default="-", help="net JSON file, or - for stdin (default)")
    ap.add_argument("--steps", type=int, default=None, help="time steps (default: the net's 'steps')")
    ap.add_argument("--indent", type=int, default=None)
    args = ap.parse_args(argv)
    net = json.load(sys.stdin) if args.net == "-" else json.loads(Path(args.net).read_text())
    steps = args.steps if args.steps is not None else net.get("steps")
    if steps is None:
        ap.error("no --steps and no 'steps' in the net JSON")
    # SANA-FE's C++ core prints progress on stdout: point fd 1 at stderr for the whole run (C buffers
    # flushed at exit included) and write the JSON through a private duplicate of the real stdout.
    sys.stdout.flush()
    real_out = os.dup(1)
    os.dup2(2, 1)
    result = run_sanafe(net, steps)
    with os.fdopen(real_out, "w") as f:
        json.dump(result, f, indent=args.indent)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
