"""Where the time of converting a generated array to RTLIL goes, and which source lines make
Amaranth's netlist check slow.

    python scripts/profile_rtl_export.py [--model tiny-digits] [--hardware configs/array-4x4.toml] [--edges]

Converts the program's array (``rtl.array.CoreArray``, or ``rtl.rounds.RoundsArray`` for a rounds
program, as ``spikeforge rtl`` does before Yosys)
and prints the seconds spent in Amaranth's netlist building, its combinational-cycle check
(``check_comb_cycles``, which walks an edge from every output bit of a cell to every input bit it
depends on), the cell emission and the memories' emission. With ``--edges`` it converts again,
counting instead of checking those edges, per cell kind and source line (the 15 largest): the
figures behind ``docs/performance.md``'s RTL generation paragraph. Uses Amaranth's internal
netlist API (``amaranth.hdl._nir``, ``_ir``), as pinned in ``pyproject.toml``.
"""

from __future__ import annotations

import argparse
import collections
import functools
import time

from amaranth.back import rtlil
from amaranth.hdl import _ir, _nir

from spikeforge.mapping import compile
from spikeforge.mapping.hardware import load_hardware
from spikeforge.rtl.array import CoreArray, array_inits
from spikeforge.rtl.rounds import RoundsArray, rounds_plan
from spikeforge.workflow import graph_for


def _timed(owner, name: str, key: str, into: collections.Counter) -> None:
    f = getattr(owner, name)

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            into[key] += time.perf_counter() - t0

    setattr(owner, name, wrapper)


class _Counted(Exception):
    pass


def _count_edges(into: collections.Counter):
    def check(self):
        for idx, cell in enumerate(self.cells):
            if idx == 0:  # the top cell: the design's ports
                continue
            n = sum(sum(1 for _ in cell.comb_edges_to(net.bit)) for net in cell.output_nets(idx))
            if n:
                loc = f"{cell.src_loc[0].rsplit('/', 1)[-1]}:{cell.src_loc[1]}" if cell.src_loc else "?"
                into[(type(cell).__name__, getattr(cell, "operator", ""), loc)] += n
        raise _Counted

    return check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-digits")
    ap.add_argument("--hardware", default="configs/array-4x4.toml")
    ap.add_argument("--edges", action="store_true", help="also count the netlist check's edges by source line")
    args = ap.parse_args()
    program = compile(graph_for(args.model), load_hardware(args.hardware))

    def top():
        if program.plan.mode == "rounds":
            return RoundsArray(program.hardware, rounds_plan(program))
        return CoreArray(program.hardware, array_inits(program), steps=program.graph.total_steps)

    seconds: collections.Counter = collections.Counter()
    check = _nir.Netlist.check_comb_cycles
    _timed(_nir.Netlist, "check_comb_cycles", "netlist check (check_comb_cycles)", seconds)
    _timed(_ir, "build_netlist", "netlist, the check included (build_netlist)", seconds)
    _timed(rtlil.ModuleEmitter, "emit_cells", "cells, memories included (emit_cells)", seconds)
    _timed(rtlil.ModuleEmitter, "emit_memory", "memories (emit_memory)", seconds)
    t0 = time.perf_counter()
    text = rtlil.convert(top(), name="core_array")
    total = time.perf_counter() - t0
    print(f"{args.model} on {args.hardware} ({program.plan.mode}): RTLIL {len(text) / 1e6:.1f} MB in {total:.1f} s")
    for key, value in seconds.items():
        print(f"  {value:7.1f} s  {key}")
    if args.edges:
        edges: collections.Counter = collections.Counter()
        _nir.Netlist.check_comb_cycles = _count_edges(edges)
        try:
            rtlil.convert(top(), name="core_array")
        except _Counted:
            pass
        finally:
            _nir.Netlist.check_comb_cycles = check
        print(f"netlist check edges: {sum(edges.values()):,}; the largest by cell and source line:")
        for (kind, op, loc), n in edges.most_common(15):
            print(f"  {n:>12,}  {kind} {op} {loc}")


if __name__ == "__main__":
    main()
