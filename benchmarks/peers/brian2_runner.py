"""Peer runner: run one integer integrate-and-fire layer in Brian2's C++ standalone mode (benchmark only).

Brian2 runs from its own virtual environment (``/work/brian2-venv``, see README.md beside this file), so its
pins never meet ours. Two ways in:

* ``python brian2_runner.py net.npz [--repeat N]`` with the Brian2 venv's interpreter: the result JSON goes to
  stdout (compiler and Brian2 chatter go to stderr);
* ``run_brian2_subprocess(npz_path)`` from any Python (ours): runs the line above with ``$BRIAN2_PYTHON`` or
  ``/work/brian2-venv/bin/python`` and parses the JSON.

Input ``.npz`` (``np.load(path, allow_pickle=False)``):

    weight     int   (n_dst, n_src)  8-bit signed values, -128..127
    threshold  int   (n_dst,)
    spikes     0/1   (T, n_src)      input raster: row t = the inputs that spike at step t
    steps      int   scalar, >= T    number of steps to simulate

Semantics (exact integers; Brian2 holds them in float64, which is exact here): dt = 1 ms, v0 = 0, no leak. At
each step t: ``v += sum of the weights of the inputs that spiked at step t - 1``, then ``if v >= threshold:
spike; v -= threshold``. So a spike at step t is integrated at step t + 1, and the last input row T - 1 is
integrated only if steps >= T + 1.

How this maps onto Brian2 (alignment established in test_brian2_runner.py and README.md):
``SpikeGeneratorGroup`` (spike of input i at step t -> time t * dt) -> ``Synapses(on_pre='v_post += w')`` with
**delay 0** and the pre pathway scheduled ``when='before_thresholds'`` -> ``NeuronGroup`` with
``threshold='v >= th'`` and ``reset='v -= th'``. At step t the pathway runs before every threshold, so it sees
the sources' spikes of step t - 1 (the generator fills its spike space in the ``thresholds`` slot); it pushes
and delivers them, then the neurons' threshold and reset run. v after every step equals the reference.

Timings (``wall_s``):

    construct   Python: build the Brian2 objects (groups, connect(i=, j=), S.w = ...)
    compile     device.build(run=False): code generation + writing the project + make (g++)
    build       construct + compile
    binary      wall time of the first device.run(): start ./main, load the static arrays, create the
                synapses, set the weights, build the spike queue, simulate, write the results
    run_total   build + binary (what one ``run()`` with build_on_run=True costs)
    sim         median over --repeat runs of Brian2's own Network::_last_run_time (read from
                results/last_run_info.txt): the time-step loop alone, nothing before or after it. Without
                OpenMP (the default, --threads 0) Brian2 measures it with std::clock(), i.e. process CPU
                time; with OpenMP it is omp_get_wtime() wall time.
    sim_runs, binary_runs    per repeat; every repeat re-runs the same compiled binary (device.run())
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BRIAN2_PYTHON = os.environ.get("BRIAN2_PYTHON", "/work/brian2-venv/bin/python")


# ---------------------------------------------------------------------------------------------------
# Input and plain-numpy bookkeeping (no Brian2 needed)


def load_net(path) -> dict:
    """Load and validate a net ``.npz``; returns int64 arrays and Python ints."""
    with np.load(path, allow_pickle=False) as z:
        missing = {"weight", "threshold", "spikes", "steps"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)}")
        weight, threshold, spikes, steps = z["weight"], z["threshold"], z["spikes"], z["steps"]
    return validate(weight, threshold, spikes, steps)


def validate(weight, threshold, spikes, steps) -> dict:
    weight, threshold, spikes = np.asarray(weight), np.asarray(threshold), np.asarray(spikes)
    for name, a in (("weight", weight), ("threshold", threshold)):
        if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
            raise ValueError(f"{name} must be an integer array, got {a.dtype}")
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D (n_dst, n_src), got shape {weight.shape}")
    n_dst, n_src = weight.shape
    if weight.size and (weight.min() < -128 or weight.max() > 127):
        raise ValueError("weight values must be 8-bit signed (-128..127)")
    if threshold.shape != (n_dst,):
        raise ValueError(f"threshold must have shape ({n_dst},), got {threshold.shape}")
    if threshold.size and np.abs(threshold.astype(np.int64)).max() >= 2**52:
        raise ValueError("threshold too large to stay exact in float64")
    if spikes.ndim != 2 or spikes.shape[1] != n_src:
        raise ValueError(f"spikes must have shape (T, {n_src}), got {spikes.shape}")
    if not (np.issubdtype(spikes.dtype, np.integer) or spikes.dtype == np.bool_):
        raise ValueError(f"spikes must be bool or integer 0/1, got {spikes.dtype}")
    if spikes.size and not np.isin(spikes, (0, 1)).all():
        raise ValueError("spikes must be 0/1")
    steps = np.asarray(steps)
    if steps.ndim != 0 or not np.issubdtype(steps.dtype, np.integer):
        raise ValueError("steps must be an integer scalar")
    steps = int(steps)
    if steps < spikes.shape[0]:
        raise ValueError(f"steps ({steps}) must be >= the raster length T ({spikes.shape[0]})")
    return {
        "weight": weight.astype(np.int64),
        "threshold": threshold.astype(np.int64),
        "spikes": spikes.astype(bool),
        "steps": steps,
    }


def synapse_mask(weight: np.ndarray, include_zero: bool) -> np.ndarray:
    """(n_dst, n_src) bool: which (dst, src) pairs get a synapse."""
    return np.ones(weight.shape, dtype=bool) if include_zero else weight != 0


def event_counts(spikes: np.ndarray, mask: np.ndarray, steps: int) -> dict:
    """Synaptic events from the raster and the connectivity: each input spike reaches out-degree synapses.
    ``synaptic_events`` counts every input spike given; ``synaptic_events_delivered`` only those integrated
    within ``steps`` (a spike at step t lands at step t + 1, so rows t <= steps - 2)."""
    outdeg = mask.sum(axis=0).astype(np.int64)  # per input
    per_row = spikes.astype(np.int64) @ outdeg  # per step t
    return {
        "input_spikes": int(spikes.sum()),
        "synaptic_events": int(per_row.sum()),
        "synaptic_events_delivered": int(per_row[: max(steps - 1, 0)].sum()),
    }


def numpy_reference(weight, threshold, spikes, steps):
    """The semantics in plain numpy: returns the output raster as sorted [step, neuron] pairs."""
    weight, threshold = np.asarray(weight, np.int64), np.asarray(threshold, np.int64)
    spikes = np.asarray(spikes, np.int64)
    v = np.zeros(weight.shape[0], dtype=np.int64)
    out = []
    for t in range(steps):
        if 1 <= t <= spikes.shape[0]:
            v += weight @ spikes[t - 1]
        fired = v >= threshold
        v[fired] -= threshold[fired]
        out += [[t, int(n)] for n in np.flatnonzero(fired)]
    return out


# ---------------------------------------------------------------------------------------------------
# Running Brian2 (needs the Brian2 venv)


def run_brian2(
    net: dict,
    repeat: int = 1,
    include_zero: bool = False,
    build_dir: str | None = None,
    threads: int = 0,
    check: bool = False,
    profile: bool = False,
    synapse_order: str = "pre",
) -> dict:
    """Build ``net`` (from ``load_net``/``validate``) in Brian2 cpp_standalone, compile, run ``repeat`` times.

    ``build_dir``: project directory to keep (Brian2 rewrites only changed files, so make recompiles only
    what changed); default a fresh temporary directory, removed afterwards (a cold compile).
    ``check``: also count the synaptic events Brian2 delivers (a per-neuron counter incremented by on_pre)
    and record the input spikes; this adds work to the timed loop, so leave it off for timing.
    ``profile``: Brian2's per-code-object profiling (``wall_s['profile']``, summed over the steps).
    ``synapse_order``: order of the synapses handed to ``connect(i=, j=)``; Brian2 keeps it as the memory
    layout. "pre" (default) groups each source's synapses together, as Brian2's own generator-based
    ``connect`` does; "post" (target-major) makes every delivery a strided gather and is several times slower."""
    import brian2 as b2  # only in the Brian2 venv

    weight, threshold, spikes, steps = net["weight"], net["threshold"], net["spikes"], net["steps"]
    n_dst, n_src = weight.shape
    mask = synapse_mask(weight, include_zero)
    counts = event_counts(spikes, mask, steps)

    b2.prefs.logging.file_log = False
    b2.prefs.logging.std_redirection = False
    b2.BrianLogger.log_level_warn()
    tmp = None
    if build_dir is None:
        tmp = tempfile.mkdtemp(prefix="brian2_peer_")
        project = tmp
    else:
        project = str(Path(build_dir).resolve())
        Path(project).mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        b2.set_device("cpp_standalone", directory=project, build_on_run=False)
        b2.prefs.devices.cpp_standalone.openmp_threads = int(threads)
        b2.defaultclock.dt = 1 * b2.ms

        tt, ii = np.nonzero(spikes)
        gen = b2.SpikeGeneratorGroup(n_src, ii.astype(np.int32), tt * b2.ms, name="inputs")
        eqs = "v : 1\nth : 1 (constant)"
        if check:
            eqs += "\nn_syn : 1"
        neurons = b2.NeuronGroup(n_dst, eqs, threshold="v >= th", reset="v -= th", name="layer")
        neurons.th = threshold.astype(np.float64)
        on_pre = "v_post += w" + ("\nn_syn_post += 1" if check else "")
        syn = b2.Synapses(gen, neurons, "w : 1", on_pre=on_pre, delay=0 * b2.ms, name="syn")
        syn.pre.when = "before_thresholds"
        if synapse_order == "pre":  # synapses sorted by source: one source's synapses are contiguous
            kk, jj = np.nonzero(mask.T)
        elif synapse_order == "post":  # sorted by target: one source's synapses are n_src apart
            jj, kk = np.nonzero(mask)
        else:
            raise ValueError(f"synapse_order must be 'pre' or 'post', got {synapse_order!r}")
        n_syn = int(jj.size)
        if n_syn:
            syn.connect(i=kk.astype(np.int32), j=jj.astype(np.int32))
            syn.w = weight[jj, kk].astype(np.float64)
        mon = b2.SpikeMonitor(neurons, name="out_spikes")
        mon_in = b2.SpikeMonitor(gen, name="in_spikes") if check else None
        b2.run(steps * b2.ms, profile=profile)
        t_construct = time.perf_counter() - t0

        t0 = time.perf_counter()
        b2.device.build(directory=project, compile=True, run=False, with_output=False)
        t_compile = time.perf_counter() - t0
        make_s = b2.device.timers.get("compile", {}).get("make")

        sim_runs, binary_runs, raster = [], [], None
        consistent = True
        for _ in range(max(int(repeat), 1)):
            t0 = time.perf_counter()
            b2.device.run(directory=project, with_output=False)
            binary_runs.append(time.perf_counter() - t0)
            sim_runs.append(float(b2.device._last_run_time))
            steps_i = np.rint(np.asarray(mon.t / b2.ms)).astype(np.int64)
            r = sorted([int(t), int(i)] for t, i in zip(steps_i, np.asarray(mon.i)))
            if raster is not None and r != raster:
                consistent = False
            raster = r
        prof = None
        if profile:
            info = b2.device.network_get_profiling_info(b2.magic_network)
            prof = {name: float(t) for name, t in info}
        checks = {"repeats_identical": consistent}
        if check:
            delivered = int(round(float(np.asarray(neurons.n_syn[:]).sum())))
            in_steps = np.rint(np.asarray(mon_in.t / b2.ms)).astype(np.int64)
            got_in = sorted(zip(in_steps.tolist(), np.asarray(mon_in.i).tolist()))
            checks.update(
                synaptic_events_brian2=delivered,
                synaptic_events_delivered_match=delivered == counts["synaptic_events_delivered"],
                inputs_as_given=got_in == sorted(zip(tt.tolist(), ii.tolist())),
            )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    build = t_construct + t_compile
    wall = {
        "construct": t_construct,
        "compile": t_compile,
        "make": make_s,
        "build": build,
        "binary": binary_runs[0],
        "run_total": build + binary_runs[0],
        "sim": statistics.median(sim_runs),
        "sim_runs": sim_runs,
        "binary_runs": binary_runs,
        "sim_clock": "omp_get_wtime (wall)" if threads else "std::clock (process CPU time)",
    }
    if prof is not None:
        wall["profile"] = prof
    out = {
        "peer": "brian2",
        "brian2_version": b2.__version__,
        "numpy_version": np.__version__,
        "n_src": int(n_src),
        "n_dst": int(n_dst),
        "T": int(spikes.shape[0]),
        "steps": int(steps),
        "n_synapses": n_syn,
        "include_zero_weights": bool(include_zero),
        "synapse_order": synapse_order,
        "threads": int(threads),
        "repeat": len(sim_runs),
        **counts,
        "spike_count": len(raster),
        "raster": raster,  # sorted [step, neuron] pairs of the output layer
        "wall_s": wall,
        "checks": checks,
    }
    if counts["synaptic_events"] and wall["sim"] > 0:
        out["synaptic_events_per_s_sim"] = counts["synaptic_events_delivered"] / wall["sim"]
    return out


# ---------------------------------------------------------------------------------------------------
# Calling it from another Python (ours)


def run_brian2_subprocess(
    npz_path,
    python: str | None = None,
    timeout: float = 3600,
    repeat: int = 1,
    include_zero: bool = False,
    build_dir: str | None = None,
    threads: int = 0,
    check: bool = False,
    profile: bool = False,
    synapse_order: str = "pre",
) -> dict:
    """Run this file with the Brian2 venv's interpreter ($BRIAN2_PYTHON or /work/brian2-venv/bin/python) on
    ``npz_path``; returns the parsed result JSON."""
    python = python or os.environ.get("BRIAN2_PYTHON", BRIAN2_PYTHON)
    if not Path(python).exists():
        raise FileNotFoundError(f"{python} missing: create the Brian2 venv (benchmarks/peers/README.md)")
    cmd = [python, str(Path(__file__).resolve()), str(npz_path), "--repeat", str(int(repeat))]
    cmd += ["--threads", str(int(threads)), "--synapse-order", synapse_order]
    if include_zero:
        cmd.append("--include-zero")
    if build_dir is not None:
        cmd += ["--build-dir", str(build_dir)]
    if check:
        cmd.append("--check")
    if profile:
        cmd.append("--profile")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"Brian2 peer failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Run an IF layer (.npz) in Brian2 cpp_standalone; JSON on stdout.")
    ap.add_argument("npz", help="net .npz with weight, threshold, spikes, steps")
    ap.add_argument("--repeat", type=int, default=1, help="runs of the compiled binary; sim = median (default 1)")
    ap.add_argument("--include-zero", action="store_true", help="make synapses for zero weights too")
    ap.add_argument("--build-dir", default=None, help="keep the Brian2 project here (default: temporary)")
    ap.add_argument("--threads", type=int, default=0, help="Brian2 OpenMP threads (default 0: no OpenMP)")
    ap.add_argument("--check", action="store_true", help="count delivered events in Brian2 (slows the sim)")
    ap.add_argument("--profile", action="store_true", help="Brian2 per-code-object profiling")
    ap.add_argument("--synapse-order", choices=("pre", "post"), default="pre", help="synapse layout (default pre)")
    ap.add_argument("--indent", type=int, default=None)
    args = ap.parse_args(argv)
    net = load_net(args.npz)
    # make and ./main write to fd 1: point fd 1 at stderr for the whole run and write the JSON through a
    # private duplicate of the real stdout
    sys.stdout.flush()
    real_out = os.dup(1)
    os.dup2(2, 1)
    result = run_brian2(
        net,
        repeat=args.repeat,
        include_zero=args.include_zero,
        build_dir=args.build_dir,
        threads=args.threads,
        check=args.check,
        profile=args.profile,
        synapse_order=args.synapse_order,
    )
    sys.stdout.flush()
    with os.fdopen(real_out, "w") as f:
        json.dump(result, f, indent=args.indent)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
