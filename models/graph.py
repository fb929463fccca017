"""The integer SNN graph: the intermediate representation every later stage consumes.

A graph is a list of *populations* (groups of neurons or units of one kind) in topological
order and a list of *projections* that connect them. Everything is an integer: weights are
signed ``weight_bits``-bit values, thresholds, biases, initial potentials and membranes fit in
signed ``v_bits`` bits, and every delay is an explicit number of time steps.

Timing
------
A spike emitted by population ``P`` at step ``t`` through a projection with ``delay`` ``D``
is integrated by the target at step ``t + 1 + D`` (one step per hop, as on hardware with a
barrier per time step, plus ``D`` steps of delay buffer). Each population has a window of
``T`` input steps starting at ``in_start`` and a window of ``T`` output steps starting at
``out_start``; :meth:`SNNGraph.schedule` derives both from the delays and checks that every
input of a population arrives in the same window (the delay buffers of residual branches
exist to make that true).

Population kinds
----------------
``input``
    Graded integer input ``x`` (unsigned, ``value_bits`` wide), emitted unchanged at each of
    its ``T`` output steps: the first layer receives the analog input every step.
``neuron``
    Integrate-and-fire with reset by subtraction and a firing delay ``d`` (DIF; ``d = 0`` is
    plain IF). With input current ``I[t]`` and bias ``b`` during the input window::

        v[t] = v[t-1] + I[t] + b * [in_start <= t < in_start + T]
        s[t] = [out_start <= t < out_start + T] * [v[t] >= theta]
        v[t] <- v[t] - theta * s[t]

    with ``v`` starting at ``v0`` and ``out_start = in_start + d``.
``maxpool``
    Max-pool of binary spike trains by temporal decomposition: with running input counts
    ``C[t]``, output ``o[t] = max_window C[t] - max_window C[t-1]`` (binary), so that
    ``sum_t o[t] = max_window C[T]``. Fed by an MBE population, ``C[t]`` are running sums of
    payloads and ``o[t]`` is graded (signed): still ``sum_t o[t] = max_window C[T]``, exactly.
``mbe``
    Multi-basis exponential-decay neurons (the training-free conversion, :mod:`spikeforge.models.mbe`)
    in their integer lookup-table form. Each unit ``i`` integrates its input,
    ``X = sum_t I[t] + T * b`` (the bias over the input window; inputs may also arrive in
    earlier windows, and ``X`` holds them); at the first step of the output window
    (``out_start = in_start + T - 1``, the step the last input arrives) ``X`` is clamped to
    ``[x_lo, x_hi]`` (clipped units are counted) and its ``N`` basis membranes start at
    ``U_n = u - C_n``, where ``u = X`` or, with an exponent split, the mantissa or fraction of
    ``X`` (which also sets a per-unit output shift ``sh``, else 0). At output step ``k``::

        s_n[k] = [U_n >= VTH[n, k]];   U_n <- U_n - s_n[k] * R[n, k]
        P[k]   = floor((B [k = 0] + sum_n s_n[k] * DI[n, k]) * 2**sh)

    The unit emits the *graded* value ``P[k]`` (the intensity-weighted spikes of its bases,
    summed by table lookups, no multiplier; a shifter for a split); a target integrates
    ``W * P[k]``, which sums to ``W * (f(x) - b_f) * 2**out_frac_bits`` over the window when
    ``B = 0`` and there is no split. ``s_n[k]`` are the spikes counted.
``output``
    Non-spiking accumulator (logits): ``y = sum_t I[t] + T * b``.

Projection kinds
----------------
``dense`` (full matrix), ``conv`` (kernel stored once, addresses generated; a linear layer
over tokens is a 1 x 1 convolution), ``identity`` (one weight for every neuron; residual
paths), ``pool_dense`` (sum over spatial positions, then a matrix: global average pooling
folded into a classifier), ``pool`` (windows feeding a ``maxpool`` population) and
``product`` (spike x spike products such as Q K^T and Att V, whose "weights" are running
spike counts, by temporal decomposition; see :mod:`spikeforge.models.projections`). A
product's operands may also be MBE populations: then the running counts are running sums of
payloads, and each pair is a multiply-accumulate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .errors import GraphError

__all__ = [
    "InputPopulation",
    "NeuronPopulation",
    "MaxPoolPopulation",
    "OutputPopulation",
    "MBEPopulation",
    "Population",
    "DenseProjection",
    "ConvProjection",
    "IdentityProjection",
    "PoolDenseProjection",
    "PoolProjection",
    "ProductProjection",
    "Projection",
    "Window",
    "SNNGraph",
    "conv_output_hw",
    "membrane_bounds",
    "signed_range",
]


def signed_range(bits: int) -> tuple[int, int]:
    """Return the inclusive range ``(-2**(bits-1), 2**(bits-1) - 1)`` of a signed integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def conv_output_hw(h: int, w: int, kernel: tuple[int, int], stride: int, padding: int) -> tuple[int, int]:
    """Spatial output size of a convolution or pooling window: ``(h + 2p - k) // s + 1``."""
    return (h + 2 * padding - kernel[0]) // stride + 1, (w + 2 * padding - kernel[1]) // stride + 1


def _int_array(name: str, value: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise GraphError(f"{name} must hold integers, found dtype {arr.dtype}.")
    arr = arr.astype(np.int64)
    if shape is not None and arr.shape != shape:
        raise GraphError(f"{name} has shape {arr.shape}, expected {shape}.")
    arr.setflags(write=False)
    return arr


def _size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


# --------------------------------------------------------------------------- populations
@dataclass(frozen=True, eq=False)
class _PopulationBase:
    name: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if not self.name or not isinstance(self.name, str):
            raise GraphError("every population needs a non-empty name.")
        if not self.shape or any(s < 1 for s in self.shape):
            raise GraphError(f"population {self.name!r} has shape {self.shape}; every size must be >= 1.")

    @property
    def size(self) -> int:
        """Number of neurons (units) in the population."""
        return _size(self.shape)


@dataclass(frozen=True, eq=False)
class InputPopulation(_PopulationBase):
    """Graded, unsigned integer input of ``value_bits`` bits, emitted at every step of its window."""

    value_bits: int = 8
    kind: str = field(default="input", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.value_bits <= 16:
            raise GraphError(f"input {self.name!r}: value_bits must be in 1..16, got {self.value_bits}.")


@dataclass(frozen=True, eq=False)
class NeuronPopulation(_PopulationBase):
    """IF/DIF neurons with per-neuron integer threshold, bias and initial potential.

    ``delay`` is the DIF firing delay ``d`` in steps (``0``: plain IF).
    """

    threshold: np.ndarray = None  # type: ignore[assignment]
    bias: np.ndarray = None  # type: ignore[assignment]
    v0: np.ndarray = None  # type: ignore[assignment]
    delay: int = 0
    kind: str = field(default="neuron", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        n = (self.size,)
        for key in ("threshold", "bias", "v0"):
            object.__setattr__(self, key, _int_array(f"population {self.name!r} {key}", getattr(self, key), n))
        if np.any(self.threshold < 1):
            raise GraphError(f"population {self.name!r}: every threshold must be >= 1.")
        if int(self.delay) < 0:
            raise GraphError(f"population {self.name!r}: delay must be >= 0, got {self.delay}.")
        object.__setattr__(self, "delay", int(self.delay))


@dataclass(frozen=True, eq=False)
class MaxPoolPopulation(_PopulationBase):
    """Max-pool unit over binary spike trains, by running counts (see module docstring)."""

    kind: str = field(default="maxpool", init=False)


@dataclass(frozen=True, eq=False)
class OutputPopulation(_PopulationBase):
    """Non-spiking integer accumulator (the logits): ``y = sum_t I[t] + T * bias``."""

    bias: np.ndarray = None  # type: ignore[assignment]
    kind: str = field(default="output", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "bias", _int_array(f"population {self.name!r} bias", self.bias, (self.size,)))


@dataclass(frozen=True, eq=False)
class MBEPopulation(_PopulationBase):
    """Integer MBE units (see the module docstring): ``N`` bases per unit, one table row per step.

    Attributes
    ----------
    vth, reset, intensity : ndarray of int, shape (N, T)
        Threshold ``VTH[n, k]``, reset ``R[n, k]`` and output intensity ``DI[n, k]`` tables,
        shared by every unit of the population (``T`` is the graph's).
    offset : ndarray of int, shape (N,)
        Per-basis input offset ``C_n``: ``U_n = X - C_n`` at the first output step.
    x_lo, x_hi : int
        The calibrated input range in the units of ``X``; ``X`` is clamped to it.
    bias : ndarray of int, shape (n,)
        Per-unit input bias, added at every step of the input window.
    out_bias : int
        ``B``, the neuron's output bias, emitted with the first payload: ``P[0] += B`` (0: the
        bias is folded into the targets instead, as the MLP does).
    split : {"none", "exp2", "inv", "invsqrt"}
        The exponent split in front of the bases (see :func:`~spikeforge.models.neurons.mbe_split`):
        the clamped ``X`` becomes a basis input ``u`` in a fixed range and a per-unit output
        shift ``sh``; every payload is emitted as ``P[k] * 2**sh`` (floor).
    split_bits : int
        ``b``: the fraction bits of ``X`` (``exp2``) or the mantissa bits of ``u`` (``inv``,
        ``invsqrt``).
    exp_bias : int
        ``invsqrt``: added to the bit length of ``X`` before the parity fix.
    shift_base : int
        Constant part of the output shift.
    """

    vth: np.ndarray = None  # type: ignore[assignment]
    reset: np.ndarray = None  # type: ignore[assignment]
    intensity: np.ndarray = None  # type: ignore[assignment]
    offset: np.ndarray = None  # type: ignore[assignment]
    bias: np.ndarray = None  # type: ignore[assignment]
    x_lo: int = 0
    x_hi: int = 0
    out_bias: int = 0
    split: str = "none"
    split_bits: int = 0
    exp_bias: int = 0
    shift_base: int = 0
    kind: str = field(default="mbe", init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        label = f"MBE population {self.name!r}"
        for key in ("vth", "reset", "intensity"):
            arr = _int_array(f"{label} {key}", getattr(self, key))
            if arr.ndim != 2 or arr.shape[0] < 1:
                raise GraphError(f"{label}: {key} must be a (bases, T) table, got shape {arr.shape}.")
            object.__setattr__(self, key, arr)
        if not self.vth.shape == self.reset.shape == self.intensity.shape:
            raise GraphError(
                f"{label}: vth, reset and intensity tables differ in shape "
                f"({self.vth.shape}, {self.reset.shape}, {self.intensity.shape})."
            )
        object.__setattr__(self, "offset", _int_array(f"{label} offset", self.offset, (self.bases,)))
        object.__setattr__(self, "bias", _int_array(f"{label} bias", self.bias, (self.size,)))
        for key in ("x_lo", "x_hi", "out_bias", "split_bits", "exp_bias", "shift_base"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise GraphError(f"{label}: {key} must be an integer, got {value!r}.")
            object.__setattr__(self, key, int(value))
        if self.x_lo > self.x_hi:
            raise GraphError(f"{label}: x_lo = {self.x_lo} is above x_hi = {self.x_hi}.")
        if self.split not in MBE_SPLITS:
            raise GraphError(f"{label}: split must be one of {', '.join(MBE_SPLITS)}, got {self.split!r}.")
        if self.split != "none" and not 1 <= self.split_bits <= 40:
            raise GraphError(f"{label}: split {self.split!r} needs split_bits in 1..40, got {self.split_bits}.")
        if self.split in ("inv", "invsqrt") and self.x_lo < 1:
            raise GraphError(
                f"{label}: split {self.split!r} takes the bit length of X, so x_lo must be >= 1, got {self.x_lo}."
            )
        lo, hi = self.shift_range()
        if max(abs(lo), abs(hi)) > 62:
            raise GraphError(f"{label}: its output shift reaches [{lo}, {hi}]; at most 62 either way.")

    @property
    def bases(self) -> int:
        """``N``, the bases per unit."""
        return int(self.vth.shape[0])

    @property
    def delay(self) -> int:
        """Firing delay: the output window starts at the last input step (``T - 1`` steps in)."""
        return int(self.vth.shape[1]) - 1

    def basis_input_range(self) -> tuple[int, int]:
        """Range of the basis input ``u`` (the clamped ``X``, or what the split makes of it)."""
        b = self.split_bits
        if self.split == "exp2":
            return 0, (1 << b) - 1
        if self.split == "inv":
            return 1 << (b - 1), (1 << b) - 1
        if self.split == "invsqrt":
            return 1 << (b - 1), (1 << (b + 1)) - 1
        return self.x_lo, self.x_hi

    def shift_range(self) -> tuple[int, int]:
        """Least and greatest output shift ``sh`` over the clamped inputs."""
        b, base = self.split_bits, self.shift_base
        if self.split == "exp2":
            return base + (self.x_lo >> b), base + (self.x_hi >> b)
        if self.split == "inv":
            return base - int(self.x_hi).bit_length(), base - int(self.x_lo).bit_length()
        if self.split == "invsqrt":
            e_lo = int(self.x_lo).bit_length() + self.exp_bias
            e_hi = int(self.x_hi).bit_length() + self.exp_bias
            return base - (e_hi - (e_hi & 1)) // 2, base - (e_lo - (e_lo & 1)) // 2
        return base, base

    def payload_bound(self) -> int:
        """Largest ``|P[k] * 2**sh|`` a unit can emit at one step."""
        per_step = np.abs(self.intensity).sum(axis=0)
        per_step[0] += abs(self.out_bias)
        return int(per_step.max()) << max(self.shift_range()[1], 0)

    def emission_bound(self) -> int:
        """Largest ``|sum of payloads|`` over any prefix of a unit's output window."""
        per_step = np.abs(self.intensity).sum(axis=0)
        per_step[0] += abs(self.out_bias)
        return int(per_step.sum()) << max(self.shift_range()[1], 0)

    def membrane_range(self) -> tuple[int, int]:
        """Bounds on every basis membrane ``U_n`` over all clamped inputs, by interval propagation.

        Per basis, the interval ``[lo, hi]`` of ``U_n`` splits at each step into the part below
        the threshold (unchanged) and the part at or above it (shifted by ``-R``); the union of
        the two is carried on. Sound for any table (negative resets included), and tight for
        the halving-like tables the fits produce.
        """
        out_lo, out_hi = None, None
        u_lo, u_hi = self.basis_input_range()
        for n in range(self.bases):
            lo, hi = u_lo - int(self.offset[n]), u_hi - int(self.offset[n])
            blo, bhi = lo, hi
            for k in range(self.vth.shape[1]):
                th, r = int(self.vth[n, k]), int(self.reset[n, k])
                parts = []
                if lo < th:
                    parts.append((lo, min(hi, th - 1)))
                if hi >= th:
                    parts.append((max(lo, th) - r, hi - r))
                lo, hi = min(a for a, _ in parts), max(b for _, b in parts)
                blo, bhi = min(blo, lo), max(bhi, hi)
            out_lo = blo if out_lo is None else min(out_lo, blo)
            out_hi = bhi if out_hi is None else max(out_hi, bhi)
        return int(out_lo), int(out_hi)


MBE_SPLITS = ("none", "exp2", "inv", "invsqrt")

Population = Union[InputPopulation, NeuronPopulation, MaxPoolPopulation, MBEPopulation, OutputPopulation]
SPIKING_KINDS = ("neuron", "maxpool")


# --------------------------------------------------------------------------- projections
@dataclass(frozen=True, eq=False)
class _ProjectionBase:
    src: str
    dst: str

    @property
    def sources(self) -> tuple[tuple[str, int], ...]:
        """``(population name, delay)`` of each source operand."""
        return ((self.src, self.delay),)  # type: ignore[attr-defined]

    def _check_delay(self, delay: int) -> int:
        if int(delay) < 0:
            raise GraphError(f"projection {self.src!r} -> {self.dst!r}: delay must be >= 0, got {delay}.")
        return int(delay)


@dataclass(frozen=True, eq=False)
class DenseProjection(_ProjectionBase):
    """Full weight matrix ``weight[n_dst, n_src]``: ``I_dst = weight @ s_src``."""

    weight: np.ndarray = None  # type: ignore[assignment]
    delay: int = 0
    kind: str = field(default="dense", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _int_array(f"dense {self.src!r}->{self.dst!r} weight", self.weight))
        if self.weight.ndim != 2:
            raise GraphError(f"dense {self.src!r}->{self.dst!r}: weight must be 2-D, got {self.weight.ndim}-D.")
        object.__setattr__(self, "delay", self._check_delay(self.delay))

    @property
    def synapses(self) -> int:
        """Number of stored weights."""
        return int(self.weight.size)


@dataclass(frozen=True, eq=False)
class ConvProjection(_ProjectionBase):
    """2-D convolution ``kernel[c_out, c_in, kh, kw]`` between ``(C, H, W)`` populations."""

    kernel: np.ndarray = None  # type: ignore[assignment]
    stride: int = 1
    padding: int = 0
    delay: int = 0
    kind: str = field(default="conv", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel", _int_array(f"conv {self.src!r}->{self.dst!r} kernel", self.kernel))
        if self.kernel.ndim != 4:
            raise GraphError(f"conv {self.src!r}->{self.dst!r}: kernel must be 4-D (c_out, c_in, kh, kw).")
        if int(self.stride) < 1 or int(self.padding) < 0:
            raise GraphError(f"conv {self.src!r}->{self.dst!r}: stride must be >= 1 and padding >= 0.")
        object.__setattr__(self, "stride", int(self.stride))
        object.__setattr__(self, "padding", int(self.padding))
        object.__setattr__(self, "delay", self._check_delay(self.delay))

    @property
    def synapses(self) -> int:
        """Number of stored weights (the kernel, stored once)."""
        return int(self.kernel.size)


@dataclass(frozen=True, eq=False)
class IdentityProjection(_ProjectionBase):
    """One-to-one connection with a single integer weight (residual paths)."""

    weight: int = 1
    delay: int = 0
    kind: str = field(default="identity", init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.weight, (int, np.integer)):
            raise GraphError(f"identity {self.src!r}->{self.dst!r}: weight must be an integer.")
        object.__setattr__(self, "weight", int(self.weight))
        object.__setattr__(self, "delay", self._check_delay(self.delay))

    @property
    def synapses(self) -> int:
        """Number of stored weights (one, shared)."""
        return 1


@dataclass(frozen=True, eq=False)
class PoolDenseProjection(_ProjectionBase):
    """Sum a ``(C, H, W)`` source over ``H, W``, then ``weight[n_dst, C]``."""

    weight: np.ndarray = None  # type: ignore[assignment]
    delay: int = 0
    kind: str = field(default="pool_dense", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", _int_array(f"pool_dense {self.src!r}->{self.dst!r} weight", self.weight))
        if self.weight.ndim != 2:
            raise GraphError(f"pool_dense {self.src!r}->{self.dst!r}: weight must be 2-D (n_dst, channels).")
        object.__setattr__(self, "delay", self._check_delay(self.delay))

    @property
    def synapses(self) -> int:
        """Number of stored weights."""
        return int(self.weight.size)


@dataclass(frozen=True, eq=False)
class PoolProjection(_ProjectionBase):
    """Max-pool windows (``kernel x kernel``, ``stride``) from a ``(C, H, W)`` spiking source."""

    kernel: int = 2
    stride: int = 2
    delay: int = 0
    kind: str = field(default="pool", init=False)

    def __post_init__(self) -> None:
        if int(self.kernel) < 1 or int(self.stride) < 1:
            raise GraphError(f"pool {self.src!r}->{self.dst!r}: kernel and stride must be >= 1.")
        object.__setattr__(self, "kernel", int(self.kernel))
        object.__setattr__(self, "stride", int(self.stride))
        object.__setattr__(self, "delay", self._check_delay(self.delay))

    @property
    def synapses(self) -> int:
        """Pool windows store no weights."""
        return 0


@dataclass(frozen=True, eq=False)
class ProductProjection:
    """Spike x spike product ``I[out[h,i,j]] += w * sum_c a[A[h,i,c]] * b[B[h,c,j]]``.

    ``a_index`` (H, I, C), ``b_index`` (H, C, J) and ``out_index`` (H, I, J) give neuron
    indices into ``src_a``, ``src_b`` and ``dst``. Executed by temporal decomposition with
    running counts ``Abar``, ``Bbar`` kept at the target: at step ``t`` the target receives
    ``w * (Abar[t-1] b[t] + a[t] Bbar[t])`` whose sum over steps is ``w * Abar[T] Bbar[T]``.
    """

    src_a: str
    src_b: str
    dst: str
    a_index: np.ndarray
    b_index: np.ndarray
    out_index: np.ndarray
    weight: int = 1
    delay_a: int = 0
    delay_b: int = 0
    kind: str = field(default="product", init=False)

    def __post_init__(self) -> None:
        label = f"product {self.src_a!r} x {self.src_b!r} -> {self.dst!r}"
        for key in ("a_index", "b_index", "out_index"):
            arr = _int_array(f"{label} {key}", getattr(self, key))
            if arr.ndim != 3:
                raise GraphError(f"{label}: {key} must be 3-D.")
            object.__setattr__(self, key, arr)
        h, i, c = self.a_index.shape
        if self.b_index.shape[:2] != (h, c) or self.out_index.shape != (h, i, self.b_index.shape[2]):
            raise GraphError(
                f"{label}: index shapes {self.a_index.shape}, {self.b_index.shape}, {self.out_index.shape} "
                "do not chain as (H,I,C) x (H,C,J) -> (H,I,J)."
            )
        if not isinstance(self.weight, (int, np.integer)):
            raise GraphError(f"{label}: weight must be an integer.")
        object.__setattr__(self, "weight", int(self.weight))
        for key in ("delay_a", "delay_b"):
            if int(getattr(self, key)) < 0:
                raise GraphError(f"{label}: {key} must be >= 0.")
            object.__setattr__(self, key, int(getattr(self, key)))

    @property
    def sources(self) -> tuple[tuple[str, int], ...]:
        """``(population name, delay)`` of each source operand."""
        return ((self.src_a, self.delay_a), (self.src_b, self.delay_b))

    @property
    def synapses(self) -> int:
        """Stored weights: one scale (the operands are written at run time)."""
        return 1


Projection = Union[
    DenseProjection, ConvProjection, IdentityProjection, PoolDenseProjection, PoolProjection, ProductProjection
]


@dataclass(frozen=True)
class Window:
    """Steps at which a population receives input and emits output (each ``T`` long)."""

    in_start: int
    out_start: int


# --------------------------------------------------------------------------- graph
@dataclass(frozen=True, eq=False)
class SNNGraph:
    """An integer spiking network: populations, projections, time steps and bit widths.

    Construction validates everything (names, shapes, widths, timing); an inconsistent graph
    raises :class:`GraphError` naming the population or projection at fault.
    """

    populations: tuple[Population, ...]
    projections: tuple[Projection, ...]
    timesteps: int
    weight_bits: int = 8
    v_bits: int = 24
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "populations", tuple(self.populations))
        object.__setattr__(self, "projections", tuple(self.projections))
        self._validate()

    # -- lookup -------------------------------------------------------------------------
    def population(self, name: str) -> Population:
        """Return the population called ``name``."""
        pop = self._by_name.get(name)
        if pop is None:
            raise GraphError(f"the graph has no population called {name!r}.")
        return pop

    def incoming(self, name: str) -> list[Projection]:
        """Projections whose target is ``name``, in graph order."""
        return [p for p in self.projections if p.dst == name]

    def graded(self, name: str) -> bool:
        """Whether ``name`` emits graded values (input, MBE payloads, a max-pool of them), not spikes."""
        pop = self.population(name)
        if pop.kind == "maxpool":
            return self.graded(self.incoming(name)[0].src)
        return pop.kind in ("input", "mbe")

    @property
    def input(self) -> InputPopulation:
        """The graph's single input population."""
        return next(p for p in self.populations if p.kind == "input")  # type: ignore[return-value]

    @property
    def output(self) -> OutputPopulation:
        """The graph's single output (logits) population."""
        return next(p for p in self.populations if p.kind == "output")  # type: ignore[return-value]

    # -- timing -------------------------------------------------------------------------
    def schedule(self) -> dict[str, Window]:
        """Input and output windows of every population (see the module docstring)."""
        return dict(self._schedule)

    @property
    def total_steps(self) -> int:
        """Steps needed to run the graph to completion (last output window closes)."""
        return max(w.out_start for w in self._schedule.values()) + self.timesteps

    @property
    def latency_steps(self) -> int:
        """Steps added by hops and delays beyond the ``T`` steps of one window."""
        return self.total_steps - self.timesteps

    # -- validation ---------------------------------------------------------------------
    def _validate(self) -> None:
        if int(self.timesteps) < 1:
            raise GraphError(f"timesteps must be >= 1, got {self.timesteps}.")
        if not 2 <= int(self.weight_bits) <= 16:
            raise GraphError(f"weight_bits must be in 2..16, got {self.weight_bits}.")
        if not 8 <= int(self.v_bits) <= 48:
            raise GraphError(f"v_bits must be in 8..48, got {self.v_bits}.")
        index: dict[str, int] = {}
        for i, pop in enumerate(self.populations):
            if pop.name in index:
                raise GraphError(f"two populations are called {pop.name!r}.")
            index[pop.name] = i
        # name -> population: mapping and lowering look populations up hundreds of thousands of
        # times at ImageNet size, where a scan of the tuple cost seconds
        object.__setattr__(self, "_by_name", {pop.name: pop for pop in self.populations})
        kinds = [p.kind for p in self.populations]
        if kinds.count("input") != 1 or kinds.count("output") != 1:
            raise GraphError("a graph needs exactly one input and one output population.")
        wlo, whi = signed_range(self.weight_bits)
        vlo, vhi = signed_range(self.v_bits)
        for proj in self.projections:
            self._check_projection(proj, index, wlo, whi)
        for pop in self.populations:
            n_in = len(self.incoming(pop.name))
            if pop.kind == "input" and n_in:
                raise GraphError(f"input population {pop.name!r} cannot receive projections.")
            if pop.kind != "input" and not n_in:
                raise GraphError(f"population {pop.name!r} receives no projection.")
            if pop.kind == "maxpool" and (n_in != 1 or self.incoming(pop.name)[0].kind != "pool"):
                raise GraphError(f"max-pool population {pop.name!r} needs exactly one 'pool' projection.")
            if pop.kind == "mbe":
                self._check_mbe(pop, vlo, vhi)
            for key in ("threshold", "bias", "v0"):
                arr = getattr(pop, key, None)
                if arr is not None and arr.size and (arr.min() < vlo or arr.max() > vhi):
                    raise GraphError(f"population {pop.name!r}: {key} does not fit in {self.v_bits} signed bits.")
        object.__setattr__(self, "_schedule", self._compute_schedule())

    def _check_mbe(self, pop: MBEPopulation, vlo: int, vhi: int) -> None:
        label = f"MBE population {pop.name!r}"
        if pop.vth.shape[1] != self.timesteps:
            raise GraphError(
                f"{label} has tables for T = {pop.vth.shape[1]} steps; the graph runs T = {self.timesteps}."
            )
        for key in ("vth", "reset", "intensity", "offset"):
            arr = getattr(pop, key)
            if arr.min() < vlo or arr.max() > vhi:
                raise GraphError(f"{label}: {key} does not fit in {self.v_bits} signed bits.")
        if not (vlo <= pop.x_lo and pop.x_hi <= vhi):
            raise GraphError(
                f"{label}: the input range [{pop.x_lo}, {pop.x_hi}] does not fit in {self.v_bits} signed bits."
            )
        if not vlo <= pop.out_bias <= vhi:
            raise GraphError(f"{label}: out_bias does not fit in {self.v_bits} signed bits.")
        if pop.payload_bound() > vhi:
            raise GraphError(
                f"{label}: a payload can reach {pop.payload_bound()}, which does not fit in {self.v_bits} signed bits."
            )
        ulo, uhi = pop.membrane_range()
        if ulo < vlo or uhi > vhi:
            raise GraphError(
                f"{label}: its basis membranes reach [{ulo}, {uhi}], which does not fit in {self.v_bits} signed bits."
            )

    def _check_projection(self, proj: Projection, index: dict[str, int], wlo: int, whi: int) -> None:
        label = f"{proj.kind} projection into {proj.dst!r}"
        if proj.dst not in index:
            raise GraphError(f"{label}: no population called {proj.dst!r}.")
        dst = self.populations[index[proj.dst]]
        for src_name, _ in proj.sources:
            if src_name not in index:
                raise GraphError(f"{label}: no population called {src_name!r}.")
            if index[src_name] >= index[proj.dst]:
                raise GraphError(f"{label}: source {src_name!r} must come before its target (no recurrence).")
            if self.populations[index[src_name]].kind == "output":
                raise GraphError(f"{label}: the output population cannot be a source.")
        src = self.populations[index[proj.sources[0][0]]]
        if dst.kind == "input":
            raise GraphError(f"{label}: the input population cannot be a target.")
        if dst.kind == "maxpool" and proj.kind != "pool":
            raise GraphError(f"{label}: max-pool populations take only 'pool' projections.")
        if proj.kind in ("dense", "pool_dense", "conv") or proj.kind == "identity":
            weights = np.asarray(proj.kernel if proj.kind == "conv" else proj.weight)
            if weights.size and (weights.min() < wlo or weights.max() > whi):
                raise GraphError(f"{label}: weights do not fit in {self.weight_bits} signed bits.")
        if proj.kind == "dense":
            if proj.weight.shape != (dst.size, src.size):
                raise GraphError(f"{label}: weight shape {proj.weight.shape} != ({dst.size}, {src.size}).")
        elif proj.kind == "identity":
            if src.size != dst.size:
                raise GraphError(f"{label}: identity needs equal sizes, got {src.size} and {dst.size}.")
        elif proj.kind in ("conv", "pool", "pool_dense"):
            if len(src.shape) != 3:
                raise GraphError(f"{label}: source {src.name!r} must have shape (C, H, W), has {src.shape}.")
            c, h, w = src.shape
            if proj.kind == "pool_dense":
                if proj.weight.shape != (dst.size, c):
                    raise GraphError(f"{label}: weight shape {proj.weight.shape} != ({dst.size}, {c}).")
            else:
                if proj.kind == "conv":
                    co, ci, kh, kw = proj.kernel.shape
                    ho, wo = conv_output_hw(h, w, (kh, kw), proj.stride, proj.padding)
                    expect = (co, ho, wo)
                    if ci != c:
                        raise GraphError(f"{label}: kernel takes {ci} input channels, source has {c}.")
                else:
                    if src.kind not in SPIKING_KINDS + ("mbe",):
                        raise GraphError(
                            f"{label}: max-pool needs a spiking or MBE source, {src.name!r} is {src.kind}."
                        )
                    ho, wo = conv_output_hw(h, w, (proj.kernel, proj.kernel), proj.stride, 0)
                    expect = (c, ho, wo)
                if ho < 1 or wo < 1 or dst.shape != expect:
                    raise GraphError(f"{label}: target shape {dst.shape} != expected {expect}.")
        elif proj.kind == "product":
            a = self.populations[index[proj.src_a]]
            b = self.populations[index[proj.src_b]]
            for pop in (a, b):
                if pop.kind not in SPIKING_KINDS + ("mbe",):
                    raise GraphError(
                        f"{label}: operand {pop.name!r} must be spiking or an MBE population, it is {pop.kind}."
                    )
            if not -(1 << (self.v_bits - 1)) <= proj.weight < (1 << (self.v_bits - 1)):
                raise GraphError(f"{label}: weight does not fit in {self.v_bits} signed bits.")
            for arr, pop, key in (
                (proj.a_index, a, "a_index"),
                (proj.b_index, b, "b_index"),
                (proj.out_index, dst, "out_index"),
            ):
                if arr.size and (arr.min() < 0 or arr.max() >= pop.size):
                    raise GraphError(f"{label}: {key} points outside population {pop.name!r}.")
            if np.unique(proj.out_index).size != proj.out_index.size:
                raise GraphError(f"{label}: out_index names a target neuron twice.")

    def _compute_schedule(self) -> dict[str, Window]:
        sched: dict[str, Window] = {}
        for pop in self.populations:
            if pop.kind == "input":
                sched[pop.name] = Window(0, 0)
                continue
            arrivals = {
                (src, sched[src].out_start + 1 + delay)
                for proj in self.incoming(pop.name)
                for src, delay in proj.sources
            }
            starts = {a for _, a in arrivals}
            if pop.kind == "mbe":
                # X only accumulates until the first output step: earlier inputs are held there
                starts = {max(starts)}
            if len(starts) != 1:
                detail = ", ".join(f"{s!r} at step {a}" for s, a in sorted(arrivals))
                raise GraphError(
                    f"inputs of population {pop.name!r} arrive in different windows ({detail}); "
                    "add delay to the early projections so they align."
                )
            start = starts.pop()
            delay = pop.delay if pop.kind in ("neuron", "mbe") else 0
            sched[pop.name] = Window(start, start + delay)
        return sched


def membrane_bounds(graph: SNNGraph) -> dict[str, int]:
    """A static bound on ``|v|`` of every neuron and output population.

    ``|v| <= |v0| + T |b| + sum_proj sum_j |w_ij| * max_total(src)``, where ``max_total`` is the
    most a source neuron can emit over its window (``T`` spikes, or ``T * (2**bits - 1)`` for
    the input, ``sum_k max |P[k]|`` for an MBE unit) and a product contributes ``|w| * C * maxA *
    maxB`` (``T**2`` for spike operands). For an MBE population the bound is on its input
    accumulator ``X``.
    """
    T = graph.timesteps
    max_total: dict[str, int] = {}
    bounds: dict[str, int] = {}
    for pop in graph.populations:
        if pop.kind == "input":
            max_total[pop.name] = T * ((1 << pop.value_bits) - 1)
            continue
        # an MBE unit emits at most sum |P[k]| over its window (every basis firing at every step)
        max_total[pop.name] = pop.emission_bound() if pop.kind == "mbe" else T
        if pop.kind == "maxpool":  # the running maximum of its sources' running sums
            max_total[pop.name] = max_total[graph.incoming(pop.name)[0].src]
            continue
        total = 0
        for proj in graph.incoming(pop.name):
            if proj.kind == "product":
                total += abs(proj.weight) * proj.a_index.shape[2] * max_total[proj.src_a] * max_total[proj.src_b]
                continue
            m = max_total[proj.src]
            if proj.kind == "conv":
                total += int(np.abs(proj.kernel).sum(axis=(1, 2, 3)).max()) * m
            elif proj.kind == "dense":
                total += int(np.abs(proj.weight).sum(axis=1).max()) * m
            elif proj.kind == "pool_dense":
                src = graph.population(proj.src)
                spatial = src.size // src.shape[0]
                total += int(np.abs(proj.weight).sum(axis=1).max()) * spatial * m
            elif proj.kind == "identity":
                total += abs(proj.weight) * m
        v0 = int(np.abs(pop.v0).max()) if pop.kind == "neuron" else 0
        bounds[pop.name] = v0 + T * int(np.abs(pop.bias).max()) + total
    return bounds
