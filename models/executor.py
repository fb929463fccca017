"""Functional reference executor of the SNN graph: numpy, step by step, written for clarity.

It is the golden model the cycle-level simulator and the RTL are held to. Each time step
``t``, every projection delivers the spikes its sources emitted at ``t - 1 - delay``; every
population then updates by the equations of :mod:`spikeforge.models.neurons`. Membranes are
checked against the graph's ``v_bits`` at every step: a value that would not fit the hardware
raises instead of silently differing from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import GraphError
from .graph import SNNGraph, signed_range
from .neurons import if_fire, maxpool_step, mbe_fire, mbe_start
from .projections import pool_windows, product_operands, propagate_linear

__all__ = ["SNNRun", "check_input", "run_snn"]


@dataclass
class SNNRun:
    """What a run of the functional executor produced.

    Attributes
    ----------
    rasters : dict of str to ndarray, shape (steps, batch, n)
        Output of every population at every step (``int8`` spikes; ``int64`` graded values
        for the input and the payloads ``P`` of MBE units). Empty when the run was made with
        ``record=False``.
    counts : dict of str to ndarray of int64, shape (batch, n)
        Sum over steps of every population's output (spike counts; for MBE units the basis
        spikes, not the payloads).
    logits : ndarray of int64, shape (batch, n_classes)
        The output accumulator after the last step.
    steps : int
        Number of steps simulated (``graph.total_steps``).
    clipped : dict of str to ndarray of int64, shape (batch,)
        Per MBE population: units whose input was outside the calibrated range and was clamped.
    """

    rasters: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]
    logits: np.ndarray
    steps: int
    clipped: dict[str, np.ndarray] = field(default_factory=dict)


def check_input(graph: SNNGraph, x: np.ndarray) -> np.ndarray:
    """Validate a batch of integer inputs for ``graph`` and return it as ``(batch, n)`` int64."""
    pop = graph.input
    x = np.asarray(x)
    if x.shape[1:] != pop.shape:
        raise GraphError(
            f"input has shape {x.shape[1:]} per sample but the model expects {pop.shape}; "
            "pass a batch shaped (samples, " + ", ".join(map(str, pop.shape)) + ")."
        )
    if x.dtype.kind not in "iu":
        raise GraphError(f"input must hold integers (the model's {pop.value_bits}-bit codes), found {x.dtype}.")
    if x.size and (x.min() < 0 or x.max() >= (1 << pop.value_bits)):
        raise GraphError(f"input values must be in 0..{(1 << pop.value_bits) - 1}, found {x.min()}..{x.max()}.")
    return x.reshape(x.shape[0], pop.size).astype(np.int64)


def run_snn(graph: SNNGraph, x: np.ndarray, record: bool = True) -> SNNRun:
    """Run ``graph`` on a batch of inputs for ``graph.total_steps`` steps.

    Parameters
    ----------
    graph : SNNGraph
        The network.
    x : ndarray of int, shape (batch, *input_shape)
        Unsigned integer inputs (``value_bits`` wide).
    record : bool
        Keep every population's raster (memory: steps x batch x neurons bytes).

    Returns
    -------
    SNNRun
    """
    xin = check_input(graph, x)
    batch, T = xin.shape[0], graph.timesteps
    steps = graph.total_steps
    sched = graph.schedule()
    vlo, vhi = signed_range(graph.v_bits)
    pops = {p.name: p for p in graph.populations}
    incoming = {p.name: graph.incoming(p.name) for p in graph.populations}
    # Output history per population; spikes are read back by delay, so keep every step.
    hist = {
        p.name: np.zeros((steps, batch, p.size), dtype=np.int64 if graph.graded(p.name) else np.int8)
        for p in graph.populations
        if p.kind != "output"
    }
    v = {p.name: np.broadcast_to(p.v0, (batch, p.size)).copy() for p in graph.populations if p.kind == "neuron"}
    acc = {p.name: np.zeros((batch, p.size), np.int64) for p in graph.populations if p.kind in ("output", "mbe")}
    mbe_u: dict[str, np.ndarray] = {}  # basis membranes, from the first output step on
    mbe_sh: dict[str, np.ndarray] = {}  # output shift per unit (exponent split)
    mbe_spikes = {p.name: np.zeros((batch, p.size), np.int64) for p in graph.populations if p.kind == "mbe"}
    clipped = {p.name: np.zeros(batch, np.int64) for p in graph.populations if p.kind == "mbe"}
    pool_state = {}
    prod_state = {}
    for proj in graph.projections:
        if proj.kind == "pool":
            src = pops[proj.src]
            pool_state[id(proj)] = (
                pool_windows(proj, src),
                np.zeros((batch, src.size), np.int64),
                np.zeros((batch, pops[proj.dst].size), np.int64),
            )
        elif proj.kind == "product":
            h, i, c = proj.a_index.shape
            j = proj.b_index.shape[2]
            prod_state[id(proj)] = (np.zeros((batch, h, i, c), np.int64), np.zeros((batch, h, c, j), np.int64))

    def emitted(name: str, t: int) -> np.ndarray | None:
        return hist[name][t] if 0 <= t < steps else None

    for t in range(steps):
        for pop in graph.populations:
            win = sched[pop.name]
            if pop.kind == "input":
                if t < T:
                    hist[pop.name][t] = xin
                continue
            current = np.zeros((batch, pop.size), np.int64)
            for proj in incoming[pop.name]:
                if proj.kind == "product":
                    a = emitted(proj.src_a, t - 1 - proj.delay_a)
                    b = emitted(proj.src_b, t - 1 - proj.delay_b)
                    if a is None or b is None:
                        continue
                    abar, bbar = prod_state[id(proj)]
                    at, bt = product_operands(proj, a.astype(np.int64), b.astype(np.int64))
                    bbar += bt  # Bbar[t] includes this step's b; Abar is still Abar[t-1]
                    current[:, proj.out_index] += proj.weight * (abar @ bt + at @ bbar)
                    abar += at
                elif proj.kind == "pool":
                    s = emitted(proj.src, t - 1 - proj.delay)
                    windows, counts, prev_max = pool_state[id(proj)]
                    if s is not None:
                        counts += s
                    hist[pop.name][t] = maxpool_step(counts, windows, prev_max)
                else:
                    s = emitted(proj.src, t - 1 - proj.delay)
                    if s is not None and s.any():
                        current += propagate_linear(proj, s, pops[proj.src])
            in_window = win.in_start <= t < win.in_start + T
            if pop.kind == "neuron":
                vv = v[pop.name]
                vv += current
                if in_window:
                    vv += pop.bias
                if win.out_start <= t < win.out_start + T:
                    hist[pop.name][t] = if_fire(vv, pop.threshold)
                if vv.size and (vv.min() < vlo or vv.max() > vhi):
                    raise GraphError(
                        f"membrane of population {pop.name!r} left the {graph.v_bits}-bit range at step {t}."
                    )
            elif pop.kind == "output":
                acc[pop.name] += current
                if in_window:
                    acc[pop.name] += pop.bias
            elif pop.kind == "mbe":
                x_acc = acc[pop.name]
                x_acc += current
                if in_window:
                    x_acc += pop.bias
                if x_acc.size and (x_acc.min() < vlo or x_acc.max() > vhi):
                    raise GraphError(
                        f"input accumulator of MBE population {pop.name!r} left the {graph.v_bits}-bit range "
                        f"at step {t}."
                    )
                k = t - win.out_start
                if k == 0:
                    mbe_u[pop.name], clip, mbe_sh[pop.name] = mbe_start(
                        x_acc, pop.offset, pop.x_lo, pop.x_hi, pop.split, pop.split_bits, pop.exp_bias, pop.shift_base
                    )
                    clipped[pop.name] += clip.sum(axis=1)
                if 0 <= k < T:
                    payload, fired = mbe_fire(
                        mbe_u[pop.name],
                        pop.vth[:, k],
                        pop.reset[:, k],
                        pop.intensity[:, k],
                        pop.out_bias if k == 0 else 0,
                        mbe_sh[pop.name],
                    )
                    hist[pop.name][t] = payload
                    mbe_spikes[pop.name] += fired
    counts = {name: h.sum(axis=0, dtype=np.int64) for name, h in hist.items()}
    counts.update(mbe_spikes)
    logits = acc[graph.output.name]
    counts[graph.output.name] = logits
    if logits.size and (logits.min() < vlo or logits.max() > vhi):
        raise GraphError(f"the output accumulator left the {graph.v_bits}-bit range.")
    return SNNRun(rasters=hist if record else {}, counts=counts, logits=logits, steps=steps, clipped=clipped)
