"""Tables of constants a generated array reads at run time, as memories initialised from the program.

A :class:`FieldTable` holds one word per row (a round of a rounds core, a piece of a swap core's
timeline) of named unsigned fields, each as wide as its largest value; :meth:`FieldTable.read`
adds an asynchronous read port, so a row is read in the cycle its index is known, as the
multiplexers of constants it replaces were.
"""

from __future__ import annotations

from amaranth import Module, unsigned
from amaranth.lib.memory import Memory

__all__ = ["FieldTable"]


class FieldTable:
    """``rows`` (dicts with the same keys, non-negative integer values) as the memory ``name`` of ``m``.

    Raises
    ------
    ValueError
        When ``rows`` is empty or a value is negative.
    """

    def __init__(self, m: Module, name: str, rows: list[dict[str, int]]) -> None:
        if not rows:
            raise ValueError(f"table {name!r} has no rows")
        if any(int(v) < 0 for r in rows for v in r.values()):
            raise ValueError(f"table {name!r} holds a negative value")
        self.fields = [(key, max(1, max(int(r[key]) for r in rows).bit_length())) for key in rows[0]]
        words = []
        for r in rows:
            w, off = 0, 0
            for key, bits in self.fields:
                w |= int(r[key]) << off
                off += bits
            words.append(w)
        self.rows = len(rows)
        m.submodules[name] = self.mem = Memory(
            shape=unsigned(sum(b for _, b in self.fields)), depth=len(words), init=words
        )

    def read(self, m: Module, addr) -> dict:
        """The fields of row ``addr`` (an asynchronous read port). A row past the last is undefined (X in
        Verilog): callers use the fields only when ``addr`` names a row."""
        rd = self.mem.read_port(domain="comb")
        m.d.comb += rd.addr.eq(addr)
        out, off = {}, 0
        for key, bits in self.fields:
            out[key] = rd.data[off : off + bits]
            off += bits
        return out
