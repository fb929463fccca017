"""NIR interoperability: import spiking networks written as NIR graphs, export ours.

NIR (the Neuromorphic Intermediate Representation, PyPI ``nir``, HDF5 files) describes
continuous-time neurons with float parameters; SpikeForge graphs are discrete-time integer
networks. The conversion rule (``docs/nir.md``), with time step ``dt``:

* **Neurons.** ``IF`` (``dv/dt = R I``) takes ``v[t] = v[t-1] + r * I[t]``. ``LIF``
  (``tau dv/dt = (v_leak - v) + R I``) discretises to
  ``v[t] = v[t-1] + (dt / tau) (v_leak - v[t-1]) + (dt r / tau) I[t]``: only ``tau = inf`` (no
  leak) has an exact form on IF cores, with input gain ``dt r / tau`` (taken as 1 when ``r`` is
  infinite too: snnTorch writes ``beta = 1`` as ``tau = r = inf`` with ``r = tau / dt``). A
  neuron spikes when ``v > v_threshold`` (strict) and is reset by subtracting the threshold,
  which is what snnTorch simulates (it writes ``v_reset = 0`` nonetheless); ``v_reset`` must be
  0. On integers, ``v > theta`` is ``v - 1 >= theta``, so imported neurons start at ``v0 = -1``.
* **Synapses.** Every chain of ``Affine``, ``Linear``, ``Conv2d``, ``Flatten``, ``SumPool2d``,
  ``AvgPool2d`` and ``Scale`` nodes between two neuron nodes is one projection: a lone
  ``Conv2d`` becomes a convolution (kernel stored once); any other chain is composed into a
  dense matrix and a bias. Biases add at every step, as in ``Affine``.
* **Integers.** Each population gets the smallest power-of-two scale ``2^k`` that makes its
  incoming weights, bias and threshold integers within the graph's widths: then the import is
  exact (spikes do not depend on a common scale). When no scale does, the largest that fits is
  used and the weights are rounded; :class:`NirImport` reports the largest rounding error.
* **Input** is graded: non-negative integers of ``value_bits``, the same at every step.

Export writes the NIR-expressible part of a graph (IF neurons without firing delay that start
at ``v0 = -1``, dense, convolution, identity and pool-dense projections without delays); a
population that NIR cannot express is named instead of writing a broken file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SpikeForgeError
from .graph import (
    ConvProjection,
    DenseProjection,
    IdentityProjection,
    InputPopulation,
    NeuronPopulation,
    OutputPopulation,
    PoolDenseProjection,
    SNNGraph,
    conv_output_hw,
    signed_range,
)

__all__ = ["NirError", "NirImport", "read_nir", "import_nir", "export_nir", "SUPPORTED_NODES"]

#: NIR node types the importer reads (nested ``NIRGraph`` nodes are flattened).
SUPPORTED_NODES = (
    "Input",
    "Output",
    "Affine",
    "Linear",
    "Conv2d",
    "Flatten",
    "SumPool2d",
    "AvgPool2d",
    "Scale",
    "IF",
    "LIF",
)
_LINEAR = ("Affine", "Linear", "Conv2d", "Flatten", "SumPool2d", "AvgPool2d", "Scale", "_Pass")
_MAX_DENSE = 1 << 24  # composed matrices larger than this are refused, not allocated


class NirError(SpikeForgeError):
    """A NIR file or graph cannot be read or converted; the message names the node."""


@dataclass
class NirImport:
    """An imported network and how exactly it was converted.

    Attributes
    ----------
    graph : SNNGraph
    scales : dict of str to float
        Per population: integer value = NIR value x scale.
    rounding : dict of str to float
        Per population: largest |rounded - exact| of a scaled weight, bias or threshold (0: exact).
    """

    graph: SNNGraph
    scales: dict[str, float] = field(default_factory=dict)
    rounding: dict[str, float] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        """True when no weight, bias or threshold was rounded."""
        return all(r == 0 for r in self.rounding.values())


def _nir():
    try:
        import nir
    except ImportError:
        raise NirError("NIR files need the nir extra: pip install 'spikeforge[nir]'.") from None
    return nir


def read_nir(path: str | Path):
    """Read a NIR (HDF5) file; one sentence when it is missing, not HDF5, truncated or not NIR."""
    nir = _nir()
    path = Path(path)
    if not path.is_file():
        raise NirError(f"{path}: no such NIR file.")
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic != b"\x89HDF\r\n\x1a\n":
        raise NirError(f"{path}: not a NIR file (NIR files are HDF5; this one does not start with the HDF5 signature).")
    try:
        # nir >= 1.0.5 checks types while reading, and refuses files snnTorch writes (a batch
        # dimension on the input); shapes are checked here, node by node, instead
        return nir.read(str(path), type_check=False)
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise NirError(f"{path}: cannot be read as a NIR graph ({type(exc).__name__}: {exc}); truncated?") from None


# --------------------------------------------------------------------------- graph walking
def _flatten(graph, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Nodes and edges with nested graphs inlined (their Input/Output nodes become pass-throughs)."""
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    inner_in: dict[str, str] = {}
    inner_out: dict[str, str] = {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if type(node).__name__ == "NIRGraph":
            sub_nodes, sub_edges = _flatten(node, full + ".")
            ins = [n for n, v in node.nodes.items() if type(v).__name__ == "Input"]
            outs = [n for n, v in node.nodes.items() if type(v).__name__ == "Output"]
            if len(ins) != 1 or len(outs) != 1:
                raise NirError(f"nested graph {full!r} needs exactly one Input and one Output node.")
            for n in (ins[0], outs[0]):
                sub_nodes[full + "." + n] = _Pass(sub_nodes[full + "." + n])
            nodes.update(sub_nodes)
            edges += sub_edges
            inner_in[full], inner_out[full] = full + "." + ins[0], full + "." + outs[0]
        else:
            nodes[full] = node
    for a, b in graph.edges:
        a, b = prefix + a, prefix + b
        edges.append((inner_out.get(a, a), inner_in.get(b, b)))
    return nodes, edges


class _Pass:
    """The Input/Output node of a nested graph: passes its input through."""

    def __init__(self, node) -> None:
        self.node = node


def _kind(node) -> str:
    return "_Pass" if isinstance(node, _Pass) else type(node).__name__


def _shape(node) -> tuple[int, ...]:
    """A node's output shape per sample (a leading batch dimension of 1 dropped)."""
    shape = tuple(int(s) for s in np.asarray(node.output_type["output"]).ravel())
    if len(shape) in (2, 4) and shape[0] == 1:
        shape = shape[1:]
    return shape


def _declared_shape(node) -> tuple[int, ...] | None:
    """A neuron node's own shape (its threshold array's), when it declares one."""
    if _kind(node) not in ("IF", "LIF"):
        return None
    shape = tuple(int(s) for s in np.shape(node.v_threshold))
    return shape if shape and int(np.prod(shape)) > 1 else None


def _pair(v) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int).ravel()
    return (int(a[0]), int(a[-1]))


def _apply(name: str, node, x: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Apply one linear node to a batch ``x`` (batch, prod(shape)); returns the batch and its shape."""
    kind = _kind(node)
    if kind in ("_Pass", "Flatten"):
        return x, (int(np.prod(shape)),) if kind == "Flatten" else shape
    if kind in ("Affine", "Linear"):
        w = np.asarray(node.weight, float)
        if w.ndim != 2 or w.shape[1] != x.shape[1]:
            raise NirError(f"node {name!r} ({kind}) has weights {w.shape} but receives {x.shape[1]} values.")
        y = x @ w.T
        if kind == "Affine":
            y = y + np.asarray(node.bias, float).ravel()
        return y, (w.shape[0],)
    if kind == "Scale":
        s = np.asarray(node.scale, float).ravel()
        if s.size not in (1, x.shape[1]):
            raise NirError(f"node {name!r} (Scale) has {s.size} factors for {x.shape[1]} values.")
        return x * s, shape
    if kind in ("Conv2d", "SumPool2d", "AvgPool2d"):
        if len(shape) != 3:
            raise NirError(f"node {name!r} ({kind}) needs (C, H, W) input, got shape {shape}.")
        c, h, w_ = shape
        img = x.reshape(-1, c, h, w_)
        if kind == "Conv2d":
            k = np.asarray(node.weight, float)
            if k.ndim == 3:
                k = k[:, :, :, None]
            if int(node.groups) != 1 or _pair(node.dilation) != (1, 1) or isinstance(node.padding, str):
                raise NirError(f"node {name!r} (Conv2d): only groups = 1, dilation 1 and numeric padding convert.")
            if k.shape[1] != c:
                raise NirError(f"node {name!r} (Conv2d) expects {k.shape[1]} input channels, receives {c}.")
            bias = np.asarray(node.bias, float).ravel() if node.bias is not None else np.zeros(k.shape[0])
        else:
            kh, kw = _pair(node.kernel_size)
            eye = np.eye(c)[:, :, None, None] * np.ones((1, 1, kh, kw))
            k = eye / (kh * kw) if kind == "AvgPool2d" else eye
            bias = np.zeros(c)
        (sh, sw), (ph, pw) = _pair(node.stride), _pair(node.padding)
        kh, kw = k.shape[2], k.shape[3]
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w_ + 2 * pw - kw) // sw + 1
        if oh < 1 or ow < 1:
            raise NirError(f"node {name!r} ({kind}): a {kh} x {kw} window does not fit a {h} x {w_} input.")
        padded = np.pad(img, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        out = np.zeros((img.shape[0], k.shape[0], oh, ow))
        for u in range(kh):
            for v in range(kw):
                patch = padded[:, :, u : u + sh * oh : sh, v : v + sw * ow : sw]
                out += np.einsum("bchw,oc->bohw", patch, k[:, :, u, v])
        out += bias[None, :, None, None]
        return out.reshape(img.shape[0], -1), (k.shape[0], oh, ow)
    raise NirError(f"node {name!r} has type {kind}, which SpikeForge does not import; supported: {SUPPORTED_NODES}.")


def _as_identity(node, shape, dst_shape) -> float | None:
    """The factor of a lone Scale node with one factor for all (a one-to-one projection)."""
    if _kind(node) != "Scale" or int(np.prod(shape)) != int(np.prod(dst_shape)):
        return None
    f = np.asarray(node.scale, float).ravel()
    return float(f[0]) if f.size and np.all(f == f[0]) else None


def _as_conv(node, shape, dst_shape) -> tuple[np.ndarray, int, int, np.ndarray] | None:
    """A lone Conv2d that our convolution projection holds as is: (kernel, stride, padding, bias)."""
    if _kind(node) != "Conv2d" or len(shape) != 3:
        return None
    (sh, sw), (ph, pw) = _pair(node.stride), _pair(node.padding)
    k = np.asarray(node.weight, float)
    if k.ndim != 4 or sh != sw or ph != pw or int(node.groups) != 1 or _pair(node.dilation) != (1, 1):
        return None
    if (k.shape[0], *conv_output_hw(shape[1], shape[2], k.shape[2:], sh, ph)) != tuple(dst_shape):
        return None
    bias = np.asarray(node.bias, float).ravel() if node.bias is not None else np.zeros(k.shape[0])
    return k, sh, ph, bias


# --------------------------------------------------------------------------- import
def import_nir(
    source,
    timesteps: int | None = None,
    *,
    dt: float = 1e-4,
    weight_bits: int | None = None,
    v_bits: int | None = None,
    value_bits: int | None = None,
) -> NirImport:
    """Convert a NIR graph (or file) into an integer SNN graph (rules in the module docstring).

    Parameters
    ----------
    source : nir.NIRGraph or path
    timesteps : int, optional
        ``T``: steps the input is presented (NIR has no time steps of its own; default: the
        value a SpikeForge export recorded in the graph's metadata).
    dt : float
        Time step of the LIF discretisation (snnTorch exports with ``dt = 1e-4``).
    weight_bits, v_bits, value_bits : int, optional
        Widths of the graph: weights, membranes and thresholds, unsigned input values
        (defaults: a SpikeForge export's recorded values, else 8, 24 and 8).
    """
    graph = source if hasattr(source, "nodes") else read_nir(source)
    recorded = dict((getattr(graph, "metadata", None) or {}).get("spikeforge", {}) or {})
    timesteps = timesteps if timesteps is not None else recorded.get("timesteps")
    if timesteps is None:
        raise NirError("NIR graphs have no time steps: give the number of steps T to present the input.")
    weight_bits = int(weight_bits or recorded.get("weight_bits", 8))
    v_bits = int(v_bits or recorded.get("v_bits", 24))
    value_bits = int(value_bits or recorded.get("value_bits", 8))
    nodes, edges = _flatten(graph)
    for name, node in nodes.items():
        if _kind(node) not in SUPPORTED_NODES + ("_Pass",):
            raise NirError(f"node {name!r} has type {_kind(node)}, which SpikeForge does not import; supported: "
                           f"{', '.join(SUPPORTED_NODES)} and nested graphs.")  # fmt: skip
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise NirError(f"edge {a!r} -> {b!r} names a node the graph does not have.")
        preds[b].append(a)
    inputs = [n for n, v in nodes.items() if _kind(v) == "Input"]
    outputs = [n for n, v in nodes.items() if _kind(v) == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NirError(f"the graph needs one Input and one Output node, has {len(inputs)} and {len(outputs)}.")
    spiking = {n for n, v in nodes.items() if _kind(v) in ("Input", "IF", "LIF")}
    whi, vhi = signed_range(weight_bits)[1], signed_range(v_bits)[1]

    def chains(dst: str) -> list[tuple[str, list[str]]]:
        """Every (source neuron node, linear nodes from it to ``dst``) path into ``dst``."""
        out = []
        stack = [(p, []) for p in preds[dst]]
        while stack:
            n, path = stack.pop()
            if n in spiking:
                out.append((n, path[::-1]))
            elif _kind(nodes[n]) in _LINEAR:
                if len(path) > len(nodes):
                    raise NirError(f"the graph has a cycle through {n!r}; recurrent NIR graphs do not import.")
                stack += [(p, [*path, n]) for p in preds[n]]
            else:
                raise NirError(f"node {n!r} ({_kind(nodes[n])}) cannot sit between two neuron nodes.")
        return out

    shapes: dict[str, tuple[int, ...]] = {inputs[0]: _shape(nodes[inputs[0]])}
    order: list[str] = [inputs[0]]
    pending = [n for n in nodes if n in spiking and n != inputs[0]] + outputs
    incoming: dict[str, list[tuple[str, list[str]]]] = {n: chains(n) for n in pending}
    while pending:  # topological order of the neuron nodes
        ready = [n for n in pending if all(s in shapes for s, _ in incoming[n])]
        if not ready:
            raise NirError(f"nodes {pending} are not reachable from the input, or sit on a cycle.")
        for n in ready:
            pending.remove(n)
            if not incoming[n]:
                raise NirError(f"node {n!r} ({_kind(nodes[n])}) receives nothing.")
            dst_shape = None
            for src, path in incoming[n]:
                shape = shapes[src]
                for name in path:
                    _, shape = _apply(name, nodes[name], np.zeros((1, int(np.prod(shape)))), shape)
                if dst_shape is not None and int(np.prod(shape)) != int(np.prod(dst_shape)):
                    raise NirError(f"node {n!r} receives shapes {dst_shape} and {shape}; their sizes must agree.")
                dst_shape = dst_shape or shape
            declared = _declared_shape(nodes[n])
            if declared is not None and int(np.prod(declared)) != int(np.prod(dst_shape)):
                raise NirError(
                    f"node {n!r} has {int(np.prod(declared))} neurons but receives {int(np.prod(dst_shape))} values."
                )
            shapes[n] = declared or dst_shape
            order.append(n)

    pops: list = [InputPopulation(inputs[0], shapes[inputs[0]], value_bits=value_bits)]
    projs: list = []
    scales: dict[str, float] = {}
    rounding: dict[str, float] = {}
    for n in order[1:]:
        node, size = nodes[n], int(np.prod(shapes[n]))
        gain = np.ones(size)
        if _kind(node) in ("IF", "LIF"):
            gain, theta = _neuron_gain(n, node, size, dt)
        parts = []  # (src, (kind, scaled values[, stride, padding])) per incoming chain
        bias = np.zeros(size)
        for src, path in incoming[n]:
            ident = _as_identity(nodes[path[0]], shapes[src], shapes[n]) if len(path) == 1 else None
            if ident is not None:
                if not np.all(gain == gain[0]):
                    raise NirError(f"node {n!r}: a per-neuron input gain cannot scale a one-to-one Scale node.")
                parts.append((src, ("identity", np.array([ident * gain[0]]))))
                continue
            conv = _as_conv(nodes[path[0]], shapes[src], shapes[n]) if len(path) == 1 else None
            if conv is not None:
                k, st, pad, b = conv
                g = gain.reshape(shapes[n])
                if not np.all(g == g[:, :1, :1]):
                    raise NirError(f"node {n!r}: a per-position input gain cannot scale a convolution kernel.")
                parts.append((src, ("conv", k * g[:, 0, 0][:, None, None, None], st, pad)))
                bias += np.repeat(b, size // len(b)) * gain
                continue
            n_src = int(np.prod(shapes[src]))
            if n_src * size > _MAX_DENSE:
                raise NirError(
                    f"the synapses from {src!r} to {n!r} ({n_src} x {size}) are too many to compose densely."
                )
            x = np.vstack([np.zeros((1, n_src)), np.eye(n_src)])
            shape = shapes[src]
            for name in path:
                x, shape = _apply(name, nodes[name], x, shape)
            b0 = x[0]
            parts.append((src, ("dense", (x[1:] - b0).T * gain[:, None])))
            bias += b0 * gain
        has_theta = _kind(node) != "Output"
        k, err = _choose_scale(n, parts, bias, theta if has_theta else None, whi, vhi)
        s = 2.0**k
        scales[n], rounding[n] = s, err
        for src, p in parts:
            if p[0] == "conv":
                projs.append(ConvProjection(src, n, np.rint(p[1] * s).astype(np.int64), stride=p[2], padding=p[3]))
            elif p[0] == "identity":
                projs.append(IdentityProjection(src, n, weight=int(np.rint(p[1][0] * s))))
            else:
                projs.append(DenseProjection(src, n, np.rint(p[1] * s).astype(np.int64)))
        ib = np.rint(bias * s).astype(np.int64)
        if has_theta:
            th = np.rint(theta * s).astype(np.int64)
            if np.any(th < 1):
                raise NirError(f"node {n!r}: thresholds must be positive, got a minimum of {theta.min():g}.")
            # strict threshold: v > theta on integers is v - 1 >= theta, so the membrane starts at -1
            pops.append(NeuronPopulation(n, shapes[n], threshold=th, bias=ib, v0=-np.ones(size, np.int64)))
        else:
            pops.append(OutputPopulation(n, shapes[n], bias=ib))
    meta = {"converter": "nir", "dt": dt, "scales": scales, "rounding": rounding}
    g = SNNGraph(
        tuple(pops), tuple(projs), timesteps=int(timesteps), weight_bits=weight_bits, v_bits=v_bits, metadata=meta
    )
    return NirImport(g, scales, rounding)


def _neuron_gain(name: str, node, size: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Input gain per neuron and thresholds, refusing what IF cores cannot do exactly."""

    def arr(v) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, float).ravel() if np.size(v) > 1 else np.asarray(v, float), (size,)).copy()

    theta = arr(node.v_threshold)
    reset = arr(node.v_reset) if getattr(node, "v_reset", None) is not None else np.zeros(size)
    if np.any(reset != 0):
        raise NirError(f"node {name!r}: v_reset = {reset.max():g}; SpikeForge neurons reset by subtracting the "
                       "threshold, which matches v_reset = 0 only (as snnTorch exports it).")  # fmt: skip
    r = arr(node.r)
    if _kind(node) == "IF":
        return r, theta
    tau = arr(node.tau)
    if np.any(np.isfinite(tau)):
        decay = float(np.max(dt / tau[np.isfinite(tau)]))
        raise NirError(
            f"node {name!r} (LIF) leaks {decay:.3g} of its membrane per step (tau = {tau[np.isfinite(tau)].min():g} s, "
            f"dt = {dt:g} s); IF cores have no leak, so only tau = inf (snnTorch beta = 1) imports exactly."
        )
    if np.any(np.isfinite(r)):
        raise NirError(f"node {name!r} (LIF): tau = inf with finite r gives zero input gain (dt r / tau = 0).")
    return np.ones(size), theta


def _choose_scale(name, parts, bias, theta, whi: int, vhi: int) -> tuple[int, float]:
    """Smallest power-of-two exponent making everything integral within the widths (else the
    largest that fits, with the rounding error)."""
    weights = [p[1] for _, p in parts]
    wmax = max((float(np.abs(w).max()) for w in weights if w.size), default=0.0)
    vals = [bias] + ([theta] if theta is not None else [])
    vmax = max(float(np.abs(v).max()) for v in vals)
    fits = [k for k in range(-16, 33) if wmax * 2.0**k <= whi and vmax * 2.0**k <= vhi]
    if not fits:
        raise NirError(f"node {name!r}: its weights and threshold span more than the graph's widths can hold.")

    def err(k: int) -> float:
        s = 2.0**k
        return max(float(np.abs(np.rint(a * s) - a * s).max()) if np.size(a) else 0.0 for a in [*weights, *vals])

    for k in fits:
        if k >= 0 and err(k) <= 1e-9 * max(1.0, 2.0**k):
            return k, 0.0
    k = fits[-1]
    return k, err(k) / 2.0**k


# --------------------------------------------------------------------------- export
def export_nir(graph: SNNGraph, path: str | Path | None = None):
    """Write the NIR form of ``graph`` (and return the ``nir.NIRGraph``).

    Raises :class:`NirError` naming every population NIR cannot express (firing delays, max-pool,
    MBE neurons, spike x spike products, a starting potential other than -1, delayed projections).
    """
    nir = _nir()
    problems: dict[str, list[str]] = {}
    for p in graph.populations:
        if p.kind == "maxpool":
            problems.setdefault(p.name, []).append("max-pool by running counts")
        elif p.kind == "mbe":
            problems.setdefault(p.name, []).append("MBE neurons (per-step threshold tables, graded output)")
        elif p.kind == "neuron":
            if p.delay:
                problems.setdefault(p.name, []).append(f"DIF firing delay {p.delay}")
            if np.any(p.v0 != -1):  # NIR neurons start at rest; -1 is the strict-threshold offset
                problems.setdefault(p.name, []).append("v0 != -1")
    for q in graph.projections:
        if q.kind in ("product", "pool"):
            problems.setdefault(q.dst, []).append(f"fed by a {q.kind} projection")
        elif getattr(q, "delay", 0):
            problems.setdefault(q.dst, []).append(f"input from {q.src!r} delayed {q.delay} steps")
    if problems:
        listed = "; ".join(f"{name!r} ({', '.join(why)})" for name, why in problems.items())
        raise NirError(f"NIR cannot express {len(problems)} populations: {listed}.")
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    for p in graph.populations:
        shape = np.array(p.shape)
        if p.kind == "input":
            nodes[p.name] = nir.Input(input_type={"input": shape})
        elif p.kind == "neuron":
            th = p.threshold.astype(float).reshape(p.shape)
            nodes[p.name] = nir.IF(r=np.ones(p.shape), v_threshold=th, v_reset=np.zeros(p.shape))
        else:
            nodes[p.name] = nir.Output(output_type={"output": shape})
        if p.kind == "input":
            continue
        bias = p.bias.astype(float)
        incoming = graph.incoming(p.name)
        carrier = next((q for q in incoming if q.kind != "identity"), None)
        if carrier is None and np.any(bias != 0):
            raise NirError(f"population {p.name!r}: a bias with only one-to-one inputs has no NIR form.")
        for i, q in enumerate(incoming):
            src = graph.population(q.src)
            b = bias if q is carrier else np.zeros(p.size)
            name = f"{q.src}->{p.name}.{i}"
            if q.kind == "identity":
                nodes[name] = nir.Scale(scale=np.full(p.shape, float(q.weight)))
            elif q.kind == "conv":
                per_pos = b.reshape(p.shape)
                if not np.all(per_pos == per_pos[:, :1, :1]):
                    raise NirError(f"population {p.name!r}: a per-position bias has no Conv2d form in NIR.")
                nodes[name] = nir.Conv2d(
                    input_shape=tuple(src.shape[1:]),
                    weight=q.kernel.astype(float),
                    stride=q.stride,
                    padding=q.padding,
                    dilation=1,
                    groups=1,
                    bias=per_pos[:, 0, 0],
                )
            else:
                w = _dense_of(q, src, p)
                nodes[name] = nir.Affine(weight=w.astype(float), bias=b)
            edges += [(q.src, name), (name, p.name)]
    meta = {
        "spikeforge": {
            "timesteps": graph.timesteps,
            "weight_bits": graph.weight_bits,
            "v_bits": graph.v_bits,
            "value_bits": graph.input.value_bits,
        }
    }
    out = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
    if path is not None:
        try:
            nir.write(str(path), out)
        except OSError as exc:
            raise NirError(f"cannot write {path}: {exc}.") from None
    return out


def _dense_of(q, src, dst) -> np.ndarray:
    """The matrix of a dense, identity or pool-dense projection (n_dst x n_src)."""
    if isinstance(q, DenseProjection):
        return q.weight
    if isinstance(q, IdentityProjection):
        return np.eye(dst.size, dtype=np.int64) * q.weight
    if isinstance(q, PoolDenseProjection):
        hw = int(np.prod(src.shape[1:]))
        return np.repeat(q.weight, hw, axis=1)
    raise NirError(f"projection {q.src!r} -> {q.dst!r} ({q.kind}) has no NIR form.")
