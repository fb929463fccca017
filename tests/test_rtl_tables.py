"""The tables a generated array reads at run time (``rtl/tables.py``) and the lowest-set-bit encoder
(``rtl/bits.py``), on Amaranth's simulator: every row's fields come back as written, each field as
wide as its largest value, bad rows are refused, and the encoder agrees with a chain of ifs."""

from __future__ import annotations

import pytest
from amaranth import Fragment, Module, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeforge.rtl.bits import lowest_set
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


@settings(max_examples=40, deadline=None)
@given(width=st.integers(1, 70), data=st.data())
def test_the_lowest_set_bit_of_any_vector_is_found_as_a_chain_of_ifs_finds_it(width, data):
    """``lowest_set`` against the multiplexer chain it replaces, on random vectors (and 0: index 0)."""
    values = data.draw(st.lists(st.integers(0, (1 << width) - 1), min_size=1, max_size=8)) + [0]
    m = Module()
    bits = Signal(width)
    idx = lowest_set(m, bits, "low")
    got = []

    async def bench(ctx):
        for v in values:
            ctx.set(bits, v)
            got.append(ctx.get(idx))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [(v & -v).bit_length() - 1 if v else 0 for v in values]
