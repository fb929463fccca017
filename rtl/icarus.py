"""Running a cocotb bench on Icarus Verilog: the SystemVerilog of a design (converted once for equal
arguments), a work directory, the bench's spec in and its result out. The co-simulations of
:mod:`~spikeforge.rtl.cosim`, :mod:`~spikeforge.rtl.array_cosim` and :mod:`~spikeforge.rtl.rounds_cosim`
run their benches through it."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

from .errors import RtlError, ToolMissingError
from .export import to_sv
from .progress import stage

__all__ = [
    "require_icarus",
]


def require_icarus() -> str:
    """Path of ``iverilog``, or :class:`ToolMissingError` saying how to install it."""
    path = shutil.which("iverilog")
    if path is None:
        raise ToolMissingError(
            "Icarus Verilog (iverilog) is not installed: install it (Debian: apt-get install iverilog) "
            "to run the RTL co-simulation."
        )
    return path


#: SystemVerilog of the last few designs converted, by a digest of what built them (see :func:`_design_sv`)
_SV_CACHE: OrderedDict[bytes, str] = OrderedDict()
_SV_CACHE_SIZE = 4


def _design_sv(make, name: str, *args, **kwargs) -> str:
    """``to_sv(make(*args, **kwargs), name)``, converted once for equal arguments.

    A design is a function of its constructor's arguments, and Amaranth's conversion costs seconds
    (most of an array co-simulation): the samples of :func:`cosim_samples` and a clean run repeated
    with other inputs reuse it. The key is the SHA-256 of the pickled arguments (lossless, so a
    changed weight or hook is another design); only the last ``_SV_CACHE_SIZE`` designs are kept.
    """
    key = hashlib.sha256(
        pickle.dumps((make.__module__, make.__qualname__, name, args, sorted(kwargs.items())))
    ).digest()
    sv = _SV_CACHE.pop(key, None)
    if sv is None:
        sv = to_sv(make(*args, **kwargs), name)
    _SV_CACHE[key] = sv
    while len(_SV_CACHE) > _SV_CACHE_SIZE:
        _SV_CACHE.popitem(last=False)
    return sv


def _bench_in(
    workdir: str | Path | None, sv: str, spec: dict, *, design_dir: str | Path | None = None, **names
) -> dict:
    """:func:`_run_bench` in ``workdir``, or in a temporary one removed afterwards (kept when the
    environment sets ``SPIKEFORGE_KEEP_COSIM``); ``design_dir``: where the design is built (default
    the work directory), so that several runs of one design compile it once."""
    if workdir is not None:
        return _run_bench(sv, spec, Path(workdir), design_dir=design_dir, **names)
    tmp = tempfile.mkdtemp(prefix="spikeforge-cosim-")
    try:
        return _run_bench(sv, spec, Path(tmp), design_dir=design_dir, **names)
    finally:
        if not os.environ.get("SPIKEFORGE_KEEP_COSIM"):
            shutil.rmtree(tmp, ignore_errors=True)


def _build(runner, sv: str, design_dir: Path, top: str) -> None:
    """Compile ``sv`` (module ``top``) into ``design_dir/build``, unless that holds this very design.

    The build is stamped with the SHA-256 of its SystemVerilog: the samples of one co-simulation
    share their hardware (the input enters through the host port or the DRAM, not the design), so
    the second and later ones only run the bench."""
    design_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(sv.encode()).hexdigest()
    stamp = design_dir / "build" / "design.sha256"
    if stamp.exists() and stamp.read_text() == f"{top} {digest}":
        return
    stamp.unlink(missing_ok=True)
    (design_dir / f"{top}.sv").write_text(sv)
    stage(f"Icarus: compiling {top} ({len(sv) / 1e6:.1f} MB of SystemVerilog)")
    runner.build(
        sources=[design_dir / f"{top}.sv"],
        hdl_toplevel=top,
        build_dir=design_dir / "build",
        timescale=("1ns", "1ps"),
        always=True,
        log_file=design_dir / "build.log",
    )
    stamp.write_text(f"{top} {digest}")


def _run_bench(
    sv: str,
    spec: dict,
    workdir: Path,
    top: str = "core",
    bench: str = "bench_core",
    design_dir: str | Path | None = None,
) -> dict:
    """Compile ``sv`` (module ``top``) with Icarus in ``design_dir`` (default ``workdir``; skipped when it
    holds this design's build already) and run the cocotb ``bench`` on ``spec`` in ``workdir``; return
    its result."""
    require_icarus()
    try:
        from cocotb_tools.runner import get_runner
    except ImportError:
        raise ToolMissingError("cocotb is not installed: install the rtl extra (pip install -e '.[rtl]').") from None
    workdir.mkdir(parents=True, exist_ok=True)
    design = Path(design_dir) if design_dir is not None else workdir
    (workdir / "spec.json").write_text(json.dumps(spec))
    out = workdir / "result.json"
    if out.exists():
        out.unlink()
    runner = get_runner("icarus")
    _build(runner, sv, design, top)
    stage(f"Icarus: running {bench} on {top}")
    try:
        runner.test(
            test_module=f"spikeforge.rtl.{bench}",
            hdl_toplevel=top,
            hdl_toplevel_lang="verilog",  # said, as this runner may not have built the design itself
            build_dir=design / "build",
            test_dir=workdir,
            timescale=("1ns", "1ps"),
            extra_env={"SPIKEFORGE_COSIM_IN": str(workdir / "spec.json"), "SPIKEFORGE_COSIM_OUT": str(out)},
            log_file=workdir / "sim.log",
        )
    except SystemExit:  # the runner exits when the bench itself crashed (under pytest)
        pass
    if not out.exists():
        log = (workdir / "sim.log").read_text(errors="replace")[-3000:] if (workdir / "sim.log").exists() else ""
        raise RtlError(f"the cocotb bench crashed before writing its result (workdir {workdir}):\n{log}")
    return json.loads(out.read_text())
