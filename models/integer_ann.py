"""The exported integer network evaluated as an ANN: integer activation codes, no time steps.

This is the reference the SNN must equal. For every neuron population::

    code = clip(floor((sum_proj M_proj x_src + T * b + v0) / theta), 0, T)

where ``x_src`` is the source's total output over its window (``T * x`` for the analog input,
the activation code for spiking sources), products contribute ``w * A B`` of the operands'
codes, max-pool units output the maximum code in each window, and the output population is
``sum_proj M_proj x_src + T * b``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .executor import check_input
from .graph import SNNGraph
from .neurons import quantized_code
from .projections import pool_windows, product_total, propagate_linear

__all__ = ["AnnRun", "run_integer_ann"]


@dataclass
class AnnRun:
    """Integer-ANN results: ``codes`` per population ``(batch, n)`` and ``logits``."""

    codes: dict[str, np.ndarray]
    logits: np.ndarray


def run_integer_ann(graph: SNNGraph, x: np.ndarray) -> AnnRun:
    """Evaluate ``graph`` as a quantized ANN on a batch of integer inputs.

    Parameters
    ----------
    graph : SNNGraph
        The network.
    x : ndarray of int, shape (batch, *input_shape)

    Returns
    -------
    AnnRun
        ``codes[name]`` is the total output each population would emit over its window.
    """
    xin = check_input(graph, x)
    T = graph.timesteps
    pops = {p.name: p for p in graph.populations}
    codes: dict[str, np.ndarray] = {}
    for pop in graph.populations:
        if pop.kind == "input":
            codes[pop.name] = T * xin
            continue
        z = np.zeros((xin.shape[0], pop.size), np.int64)
        for proj in graph.incoming(pop.name):
            if proj.kind == "product":
                z += product_total(proj, codes[proj.src_a], codes[proj.src_b], pop.size)
            elif proj.kind == "pool":
                z = codes[proj.src][:, pool_windows(proj, pops[proj.src])].max(axis=2)
            else:
                z += propagate_linear(proj, codes[proj.src], pops[proj.src])
        if pop.kind == "neuron":
            codes[pop.name] = quantized_code(z + T * pop.bias + pop.v0, pop.threshold, T)
        elif pop.kind == "output":
            codes[pop.name] = z + T * pop.bias
        else:
            codes[pop.name] = z
    return AnnRun(codes=codes, logits=codes[graph.output.name])
