"""The tables a generated array reads at run time (``rtl/tables.py``) and the lowest-set-bit encoder
(``rtl/bits.py``), on Amaranth's simulator: every row's fields come back as written, each field as
wide as its largest value, bad rows are refused, and the encoder agrees with a chain of ifs."""

from __future__ import annotations

import pytest
from amaranth import Fragment, Module, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeforge.rtl.bits import at_least, lowest_set
from spikeforge.rtl.tables import FieldTable

pytestmark = pytest.mark.rtl


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 12).flatmap(
        lambda n: st.lists(
            st.fixed_dictionaries({"a": st.integers(0, 5), "b": st.integers(0, 2**20), "c": st.integers(0, 1)}),
            min_size=n,
            max_size=n,
        )
    )
)
def test_every_row_reads_back_its_fields_in_the_cycle_its_index_is_set(rows):
    m = Module()
    table = FieldTable(m, "t", rows)
    assert dict(table.fields) == {k: max(1, max(r[k] for r in rows).bit_length()) for k in ("a", "b", "c")}
    addr = Signal(range(len(rows) + 1))
    fields = table.read(m, addr)
    got = []

    async def bench(ctx):
        for i in range(len(rows)):
            ctx.set(addr, i)
            got.append({k: ctx.get(v) for k, v in fields.items()})  # combinational: no clock edge

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == rows


def test_a_table_without_rows_or_with_a_negative_value_is_refused():
    m = Module()
    with pytest.raises(ValueError, match="table 'x' has no rows"):
        FieldTable(m, "x", [])
    with pytest.raises(ValueError, match="table 'y' holds a negative value"):
        FieldTable(m, "y", [{"a": 1}, {"a": -2}])
    Fragment.get(m, None)  # nothing was added to the module


def comb_outputs(m: Module, inp: Signal, out: Signal, values: list[int]) -> list[int]:
    """``out`` of the combinational module ``m`` for each of ``values`` set on ``inp``, in turn."""
    got = []

    async def bench(ctx):
        for v in values:
            ctx.set(inp, v)
            got.append(ctx.get(out))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 70), data=st.data())
def test_the_lowest_set_bit_of_any_vector_is_found_as_a_chain_of_ifs_finds_it(width, data):
    """``lowest_set`` against the multiplexer chain it replaces, on random vectors (and 0: index 0)."""
    values = data.draw(st.lists(st.integers(0, (1 << width) - 1), min_size=1, max_size=8)) + [0]
    m = Module()
    bits = Signal(width)
    idx = lowest_set(m, bits, "low")
    assert comb_outputs(m, bits, idx, values) == [(v & -v).bit_length() - 1 if v else 0 for v in values]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_at_least_sets_the_bits_at_or_past_any_value(n, data):
    """``at_least(value, n)``: bit ``j`` set when ``j >= value``, for any width, values inside and
    past ``n`` (all clear) and 0 (all set), against the thermometer code it stands for."""
    vbits = max(1, n.bit_length() + 1)
    values = data.draw(st.lists(st.integers(0, (1 << vbits) - 1), min_size=1, max_size=8)) + [0, n - 1, n]
    m = Module()
    value = Signal(vbits)
    out = at_least(m, value, n, "ge")
    assert len(out) == n
    assert comb_outputs(m, value, out, values) == [sum(1 << j for j in range(n) if j >= v) for v in values]


def test_a_range_mask_and_the_lowest_set_bit_of_256_bits_take_few_combinational_edges():
    """The netlist check of Amaranth walks every combinational edge (output bit -> input bit): a
    run-time shift of a 256-bit mask has about 200,000 of them and ``x & -x`` a carry chain of 33,000;
    a swap array's encoders had hundreds of each (most of the time to convert the bundled model's 4 x 4
    array). The helpers stay under 20,000 for a range mask and the lowest set bit together."""
    from amaranth.hdl import _ir, _nir

    m = Module()
    lo, hi, bits = Signal(9), Signal(9), Signal(256)
    span = Signal(256)
    m.d.comb += span.eq(at_least(m, lo, 256, "from") & ~at_least(m, hi + 1, 256, "past"))
    idx = lowest_set(m, bits & span, "low")
    netlist = _ir.build_netlist(_ir.Fragment.get(m, None), ports=[lo, hi, bits, idx], name="t")
    edges = 0
    for k, cell in enumerate(netlist.cells):
        if k and isinstance(cell, _nir.Operator | _nir.Part | _nir.Matches):
            edges += sum(sum(1 for _ in cell.comb_edges_to(bit)) for bit in range(cell.width))
    assert 0 < edges < 20_000
