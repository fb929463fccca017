"""How many contexts the swap and rounds cores build, now and if more of a piece were registers.

    python scripts/structure_keys.py

A core position builds one ``Core`` context per piece structure (``rtl.piece.structure_key``). For
the bundled models on the bundled hardware files in swap and rounds mode this prints the contexts
of the plan as generated (a conv piece's geometry is in registers, ``rtl.piece.CONV_REGISTERS``), and as
they would be if the other pieces' slot source shapes, tile extents and population shapes were
loadable registers too (the key without them: plans only, nothing is elaborated), the measurement
behind ``docs/rtl.md``'s "Not yet built".
"""

from __future__ import annotations

from spikeforge.mapping import compile
from spikeforge.mapping.hardware import load_hardware
from spikeforge.rtl.piece import PieceInit, is_conv, is_tile, structure_key
from spikeforge.rtl.rounds import rounds_plan
from spikeforge.rtl.swap import swap_plan
from spikeforge.workflow import graph_for

CASES = (
    ("tiny-digits", "configs/array-4x4.toml"),
    ("tiny-digits", "configs/array-1x1.toml"),
    ("tiny-digits-mlp", "configs/array-1x3-mbe.toml"),
    ("tiny-digits-mlp", "configs/array-1x1-mbe.toml"),
)


def without_shapes(p: PieceInit) -> tuple:
    """``structure_key`` with the slots' source shapes, a tile's extent, index offsets and population
    shape taken out (as if they were registers)."""
    if is_conv(p):  # a conv piece's geometry is in registers already
        return structure_key(p)
    key = list(structure_key(p))
    key[2] = tuple((s[0], (), *s[2:]) for s in key[2])  # slot kind, (no source shape), kernel, stride, pad
    if is_tile(p):
        key[3], key[8], key[9] = ("tile",), None, ()
    return tuple(key)


def main() -> None:
    for model, path in CASES:
        program = compile(graph_for(model), load_hardware(path))
        if program.plan.mode == "swap":
            groups = [list(ps) for ps in swap_plan(program).contexts.values()]
        else:
            groups = [[u.init for u in us] for us in rounds_plan(program).units.values()]
        pieces = sum(len(g) for g in groups)
        now = sum(len({structure_key(p) for p in g}) for g in groups)
        then = sum(len({without_shapes(p) for p in g}) for g in groups)
        mode = program.plan.mode
        print(f"{model:16} {path:28} {mode:6} {pieces} pieces: {now} contexts, {then} with shapes as registers")


if __name__ == "__main__":
    main()
