"""Accuracy and exactness of a converted network on a labelled data set.

Runs the integer ANN and the functional SNN on the same samples, in batches, and reports
both accuracies, the spike counts, and whether the SNN equalled the integer ANN (every
neuron's spike count equal to its activation code, logits equal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import GraphError
from .executor import run_snn
from .graph import SNNGraph
from .integer_ann import run_integer_ann

__all__ = ["Evaluation", "evaluate_graph"]


@dataclass
class Evaluation:
    """Figures of one evaluation, all measured.

    Attributes
    ----------
    samples : int
        Samples evaluated.
    ann_accuracy, snn_accuracy : float
        Fraction of correct predictions of the integer ANN and of the SNN.
    logits_equal : int
        Samples whose SNN logits equal the integer ANN's exactly.
    neurons_checked, neurons_mismatched : int
        Neuron-sample pairs compared (spike count vs activation code) and how many differed.
    spikes_per_inference : float
        Mean number of spikes emitted by all spiking populations per sample.
    spikes_per_population : dict of str to float
        The same, per population.
    """

    samples: int
    ann_accuracy: float
    snn_accuracy: float
    logits_equal: int
    neurons_checked: int
    neurons_mismatched: int
    spikes_per_inference: float
    spikes_per_population: dict[str, float]

    @property
    def exact(self) -> bool:
        """True when every spike count and every logit equalled the integer ANN."""
        return self.neurons_mismatched == 0 and self.logits_equal == self.samples


def evaluate_graph(
    graph: SNNGraph, x: np.ndarray, y: np.ndarray, batch_size: int = 64, progress: bool = False
) -> Evaluation:
    """Evaluate ``graph`` on integer inputs ``x`` with labels ``y``.

    Parameters
    ----------
    graph : SNNGraph
        The converted network.
    x : ndarray of int, shape (samples, *input_shape)
    y : ndarray of int, shape (samples,)
    batch_size : int
        Samples per executor batch (memory grows with steps x batch x neurons).
    progress : bool
        Show a progress bar.
    """
    x, y = np.asarray(x), np.asarray(y)
    if len(x) == 0:
        raise GraphError("no samples to evaluate; pass at least one.")
    if y.shape != (len(x),):
        raise GraphError(f"labels have shape {y.shape}, expected ({len(x)},).")
    spiking = [p.name for p in graph.populations if p.kind in ("neuron", "maxpool")]
    ann_ok = snn_ok = logits_eq = checked = mismatched = 0
    spikes = dict.fromkeys(spiking, 0)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(x), desc="SNN samples", unit="sample")
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        ann = run_integer_ann(graph, xb)
        snn = run_snn(graph, xb, record=False)
        ann_ok += int((ann.logits.argmax(1) == yb).sum())
        snn_ok += int((snn.logits.argmax(1) == yb).sum())
        logits_eq += int(np.all(ann.logits == snn.logits, axis=1).sum())
        for name in spiking:
            checked += snn.counts[name].size
            mismatched += int((snn.counts[name] != ann.codes[name]).sum())
            spikes[name] += int(snn.counts[name].sum())
        if bar is not None:
            bar.update(len(xb))
    if bar is not None:
        bar.close()
    n = len(x)
    per_pop = {k: v / n for k, v in spikes.items()}
    return Evaluation(
        samples=n,
        ann_accuracy=ann_ok / n,
        snn_accuracy=snn_ok / n,
        logits_equal=logits_eq,
        neurons_checked=checked,
        neurons_mismatched=mismatched,
        spikes_per_inference=sum(per_pop.values()),
        spikes_per_population=per_pop,
    )
