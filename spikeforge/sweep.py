"""Design-space sweeps: map and simulate one model at every point of a sweep file.

A sweep file is a hardware description (the base point) plus a ``[sweep]`` section listing
values for dotted parameters (``docs/formats.md``). Every point is compiled and simulated in
its own worker (local processes by default, a Dask cluster when given a scheduler address).

Nothing finished is lost: each point's result is written atomically to
``DIR/points/<key>.json`` the moment it arrives, where ``key`` hashes the point's whole
hardware description and run settings. A rerun of the same sweep (after a crash, a kill or a
Ctrl-C) loads the finished points and computes only the others; a changed point gets a new
key, so a stale result is never reused. ``DIR/sweep.csv`` (one row per point, one column per
metric) and ``DIR/sweep.json`` are rewritten, atomically, after every point.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from .mapping import HardwareConfig, SweepSpec, load_sweep, parse_hardware
from .models.errors import SpikeForgeError
from .sim.counters import MEMORIES
from .sim.energy import COMPONENTS

__all__ = [
    "SweepError",
    "SweepPoint",
    "SweepResult",
    "METRIC_COLUMNS",
    "csv_columns",
    "sweep_points",
    "run_point",
    "result_row",
    "run_sweep",
    "load_sweep_result",
]

SCHEMA = "spikeforge-sweep"
SCHEMA_VERSION = 1
#: Seconds to wait for a Dask scheduler before giving up with a clear message.
CONNECT_TIMEOUT_S = 5

#: Metric columns of ``sweep.csv``, after ``point``, the swept parameters and ``label``.
METRIC_COLUMNS: tuple[str, ...] = (
    "rows",
    "cols",
    "cores",
    "lanes",
    "neurons_per_core",
    "clock_mhz",
    "energy_profile",
    "mode",
    "cores_used",
    "samples",
    "timesteps",
    "total_steps",
    "accuracy_snn",
    "accuracy_ann_quantized",
    "accuracy_float_qat",
    "accuracy_ann_float",
    "logits_equal_samples",
    "spikes_per_inference",
    "synaptic_ops_per_inference",
    "macs_per_inference",
    "neuron_updates_per_inference",
    "cycles_per_inference",
    "latency_s",
    *(f"traffic_{m}_bytes" for m in (*MEMORIES, "dram")),
    "noc_flits",
    "noc_hops",
    "noc_stall_cycles",
    "dram_stall_cycles",
    *(f"energy_{c}_pj" for c in ("total", *COMPONENTS, "paper_convention")),
    "edp_pj_s",
    "spikes_per_synapse",
    # FPGA build of the point's array (only when [sweep] fpga names a target; docs/fpga.md)
    "fpga_target",
    "fpga_luts",
    "fpga_ffs",
    "fpga_brams",
    "fpga_dsps",
    "fpga_fmax_mhz",
    "fpga_error",
    "error",
)
FPGA_COLUMNS = ("fpga_target", "fpga_luts", "fpga_ffs", "fpga_brams", "fpga_dsps", "fpga_fmax_mhz", "fpga_error")


class SweepError(SpikeForgeError):
    """A sweep cannot run: no scheduler, a missing extra, an unwritable directory."""


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: its swept values, full hardware, run settings and result key."""

    index: int
    values: dict[str, Any]
    hardware: HardwareConfig
    settings: dict[str, Any]

    @property
    def key(self) -> str:
        """Hash of the hardware description and the run settings: the name of its result file."""
        blob = json.dumps({"hardware": self.hardware.to_dict(), "settings": self.settings}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    @property
    def label(self) -> str:
        """Short name for plots and tables, e.g. ``16 cores (4x4)`` or ``4x4, core.lanes=4``."""
        a = self.hardware.array
        extra = [f"{k}={v}" for k, v in self.values.items() if k not in ("array.rows", "array.cols")]
        return ", ".join([f"{a.cores} core{'s' * (a.cores > 1)} ({a.rows}x{a.cols})", *extra])


@dataclass
class SweepResult:
    """What :func:`run_sweep` did: rows in point order, and where they were written."""

    out: Path
    parameters: tuple[str, ...]
    rows: list[dict[str, Any]]
    computed: int
    reused: int
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """Column order of ``sweep.csv``."""
        return csv_columns(self.parameters)


def csv_columns(parameters: tuple[str, ...]) -> list[str]:
    """``sweep.csv``'s columns: the point, the swept parameters, its label, the metrics."""
    return ["point", *parameters, "label", *METRIC_COLUMNS]


def sweep_points(spec: SweepSpec, base_dir: Path | None = None, **overrides: Any) -> list[SweepPoint]:
    """The points of ``spec`` with their run settings (``overrides`` given as not None win).

    Relative ``model`` and ``data`` paths are resolved against ``base_dir`` (the sweep file's
    folder) when a file of that name exists there.
    """
    settings = {"model": "tiny-digits", "samples": None, "timesteps": None, "data": None, "fpga": None}
    settings.update(spec.settings)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("model", "data"):
        value = settings[key]
        if value is not None and base_dir is not None and not Path(value).is_absolute():
            candidate = base_dir / value
            if candidate.exists():
                settings[key] = str(candidate)
    return [
        SweepPoint(index=i, values=dict(values), hardware=hw, settings=dict(settings))
        for i, (values, hw) in enumerate(zip(spec.points, spec.configs()))
    ]


def run_point(hardware: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Map and simulate one point; the :class:`~spikeforge.sim.SimResult` as a dict.

    A module-level function of plain data so that process pools and Dask workers can run it.
    """
    from .workflow import simulate_model

    result = simulate_model(
        settings["model"],
        parse_hardware(hardware),
        samples=settings.get("samples"),
        data=settings.get("data"),
        timesteps=settings.get("timesteps"),
        progress=False,
    )
    out = result.to_dict()
    if settings.get("fpga"):
        out["fpga"] = _fpga_point(hardware, settings["fpga"])
    return out


def _fpga_point(hardware: dict[str, Any], target: str) -> dict[str, Any]:
    """The FPGA figures of one point's array (the demonstration network), or why there are none."""
    import tempfile

    from .rtl import RtlError
    from .rtl.fpga import build_fpga, fpga_design

    try:
        dut, what = fpga_design(parse_hardware(hardware))
        with tempfile.TemporaryDirectory(prefix="spikeforge-fpga-") as tmp:
            report = build_fpga(dut, target, tmp, design=what).to_dict()
        return {k: report[k] for k in ("target", "design", "luts", "ffs", "brams", "dsps", "fmax_mhz")} | {"error": ""}
    except RtlError as exc:  # "does not fit", or an array the generator cannot build: the row says so
        return {"target": target, "error": str(exc)}


def result_row(result: dict[str, Any], hardware: HardwareConfig) -> dict[str, Any]:
    """The metric columns of one simulation result (:data:`METRIC_COLUMNS`, ``error`` empty)."""
    acc, energy, traffic = result["accuracy"], result["energy_pj"], result["memory_traffic_bytes"]
    row: dict[str, Any] = {
        "rows": hardware.array.rows,
        "cols": hardware.array.cols,
        "cores": hardware.array.cores,
        "lanes": hardware.core.lanes,
        "neurons_per_core": hardware.core.neurons,
        "clock_mhz": result["clock_mhz"],
        "energy_profile": result["energy"]["profile"],
        "mode": result["mode"],
        "cores_used": result["cores_used"],
        "samples": result["samples"],
        "timesteps": result["timesteps"],
        "total_steps": result["total_steps"],
        "accuracy_snn": acc.get("snn"),
        "accuracy_ann_quantized": acc.get("ann_quantized"),
        "accuracy_float_qat": acc.get("float_qat"),
        "accuracy_ann_float": acc.get("ann_float"),
        "logits_equal_samples": result["exactness"].get("logits_equal_samples"),
        "spikes_per_inference": result["spikes_per_inference"],
        "synaptic_ops_per_inference": result["synaptic_ops_per_inference"],
        "macs_per_inference": result["macs_per_inference"],
        "neuron_updates_per_inference": result["neuron_updates_per_inference"],
        "cycles_per_inference": result["cycles_per_inference"],
        "latency_s": result["latency_s"],
        "noc_flits": result["noc"]["flits"],
        "noc_hops": result["noc"]["hops"],
        "noc_stall_cycles": result["noc"]["stall_cycles"],
        "dram_stall_cycles": result["dram_stall_cycles"],
        # energy-delay product: J * s would be ~1e-12; pJ * s keeps the numbers readable
        "edp_pj_s": energy["total"] * result["latency_s"],
        "spikes_per_synapse": result["break_even"]["spikes_per_synapse"],
        "error": "",
    }
    fpga = result.get("fpga") or {}
    row.update({c: fpga.get(c.removeprefix("fpga_")) for c in FPGA_COLUMNS})
    for m in (*MEMORIES, "dram"):
        row[f"traffic_{m}_bytes"] = traffic.get(m, 0.0)
    for c in ("total", *COMPONENTS, "paper_convention"):
        row[f"energy_{c}_pj"] = energy[c]
    return {k: row[k] for k in METRIC_COLUMNS}


def _write_atomic(path: Path, text: str) -> None:
    # write beside the target, then rename: a reader (or a rerun after a kill) sees the old
    # file or the new one, never half of one
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _load_point(path: Path, point: SweepPoint) -> dict[str, Any] | None:
    """A finished point's result, or None when there is none (or it is unreadable or stale)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != point.key or not isinstance(data.get("result"), dict):
        return None
    return data["result"]


def _iter_local(todo: list[SweepPoint], workers: int) -> Iterator[tuple[SweepPoint, dict | None, str]]:
    if workers <= 1 or len(todo) <= 1:
        for point in todo:
            yield (point, *_run_guarded(point.hardware.to_dict(), point.settings))
        return
    # spawn, not fork: the parent may hold threads (tqdm, Dask) and Numba state
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_guarded, p.hardware.to_dict(), p.settings): p for p in todo}
        try:
            for fut in as_completed(futures):
                result, error = fut.result()
                yield futures[fut], result, error
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _run_guarded(hardware: dict[str, Any], settings: dict[str, Any]) -> tuple[dict | None, str]:
    # a point the model cannot be mapped onto (too small a core, a width too narrow) fails
    # alone and is reported in its row; programming errors still propagate
    try:
        return run_point(hardware, settings), ""
    except SpikeForgeError as exc:
        return None, str(exc)


def _iter_dask(todo: list[SweepPoint], scheduler: str) -> Iterator[tuple[SweepPoint, dict | None, str]]:
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:
        raise SweepError(
            "running on a Dask cluster needs the cluster extra: pip install 'spikeforge[cluster]'."
        ) from None
    try:
        client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise SweepError(
            f"cannot reach the Dask scheduler at {scheduler!r} within {CONNECT_TIMEOUT_S} s ({exc}); start one "
            "with `dask scheduler` and workers with `dask worker ADDRESS`, or drop --scheduler to run locally."
        ) from None
    try:
        futures = {
            client.submit(_run_guarded, p.hardware.to_dict(), p.settings, key=f"point-{p.key}", pure=False): p
            for p in todo
        }
        for fut in dask_completed(list(futures)):
            result, error = fut.result()
            yield futures[fut], result, error
    finally:
        client.close()


def run_sweep(
    sweep: str | Path | SweepSpec,
    out: str | Path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    model: str | None = None,
    samples: int | None = None,
    progress: bool = True,
    on_point: Callable[[SweepPoint], None] | None = None,
) -> SweepResult:
    """Map and simulate every point of a sweep; write ``out/sweep.csv`` and ``out/sweep.json``.

    Parameters
    ----------
    sweep : path or SweepSpec
        A sweep file (hardware sections plus ``[sweep]``) or a parsed spec.
    out : path
        Result directory; finished points in ``out/points/`` are reused, not recomputed.
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://host:8786``); default: local processes.
    workers : int, optional
        Local processes (default: one per CPU, at most one per point; 1 runs in this process).
    model, samples : optional
        Override the sweep file's ``model`` and ``samples``.
    progress : bool
        Show a progress bar (points done, time left).
    on_point : callable, optional
        Called with each point after its result is on disk (for tests and front ends).
    """
    from .workflow import check_writable

    if isinstance(sweep, SweepSpec):
        spec, base_dir = sweep, None
    else:
        spec, base_dir = load_sweep(sweep), Path(sweep).resolve().parent
    points = sweep_points(spec, base_dir, model=model, samples=samples)
    target = points[0].settings.get("fpga") if points else None
    if target:
        try:
            from .rtl.fpga import TARGETS
        except ImportError:
            raise SweepError("FPGA figures in a sweep need the fpga extra: pip install '.[rtl,fpga]'.") from None
        if target not in TARGETS:
            raise SweepError(f"[sweep] fpga = {target!r} is not a target; choose one of {', '.join(TARGETS)}.")
    if workers is not None and workers < 1:
        raise SweepError(f"workers must be >= 1, got {workers}.")
    out = check_writable(out)
    pdir = out / "points"
    pdir.mkdir(exist_ok=True)

    results: dict[str, dict[str, Any]] = {}
    for p in points:
        found = _load_point(pdir / f"{p.key}.json", p)
        if found is not None:
            results[p.key] = found
    reused = len({p.key for p in points} & set(results))
    todo, seen = [], set(results)
    for p in points:  # a point listed twice is computed once
        if p.key not in seen:
            todo.append(p)
            seen.add(p.key)
    errors: dict[str, str] = {}
    t0 = time.time()

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="sweep", unit="point")
    if scheduler:
        stream = _iter_dask(todo, scheduler)
    else:
        stream = _iter_local(todo, workers or min(os.cpu_count() or 1, max(1, len(todo))))
    try:
        for point, result, error in stream:
            if result is None:
                errors[point.key] = error
            else:
                results[point.key] = result
                record = {
                    "key": point.key,
                    "values": point.values,
                    "settings": point.settings,
                    "hardware": point.hardware.to_dict(),
                    "result": result,
                }
                _write_atomic(pdir / f"{point.key}.json", json.dumps(record, indent=1) + "\n")
            _write_tables(out, spec, points, results, errors, complete=False)
            if bar is not None:
                bar.update(1)
            if on_point is not None:
                on_point(point)
    finally:
        if bar is not None:
            bar.close()
    rows = _write_tables(out, spec, points, results, errors, complete=True, wall=time.time() - t0)
    failed = [r for r in rows if r["error"]]
    return SweepResult(
        out=out, parameters=spec.parameters, rows=rows, computed=len(todo) - len(errors), reused=reused, failed=failed
    )


def _rows(points, results, errors) -> list[dict[str, Any]]:
    rows = []
    for p in points:
        if p.key not in results and p.key not in errors:
            continue  # not run yet (an interrupted sweep)
        row: dict[str, Any] = {"point": p.index, **p.values, "label": p.label}
        if p.key in results:
            row.update(result_row(results[p.key], p.hardware))
        else:
            row.update({k: None for k in METRIC_COLUMNS})
            row.update(rows=p.hardware.array.rows, cols=p.hardware.array.cols, cores=p.hardware.array.cores)
            row["error"] = errors[p.key]
        rows.append(row)
    return rows


def _write_tables(out, spec, points, results, errors, complete: bool, wall: float | None = None):
    rows = _rows(points, results, errors)
    columns = csv_columns(spec.parameters)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    _write_atomic(out / "sweep.csv", buf.getvalue())
    first = next((results[p.key] for p in points if p.key in results), None)
    doc = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "parameters": list(spec.parameters),
        "mode": spec.mode,
        "settings": points[0].settings if points else {},
        "points_total": len(points),
        "points_done": len(rows),
        "complete": complete and len(rows) == len(points),
        "wall_seconds_this_run": None if wall is None else round(wall, 2),
        "columns": columns,
        "rows": rows,
        # firing rates do not depend on the hardware: one point's are the model's
        "per_population": first["per_population"] if first else {},
        "points": {p.key: p.index for p in points},
    }
    _write_atomic(out / "sweep.json", json.dumps(doc, indent=1) + "\n")
    return rows


def load_sweep_result(directory: str | Path) -> dict[str, Any]:
    """Read ``directory/sweep.json`` (for plotting); a clear error when it is missing or not ours."""
    path = Path(directory) / "sweep.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise SweepError(f"{path}: no sweep results here; run `spikeforge sweep SWEEP.toml --out DIR` first.") from None
    except (OSError, ValueError) as exc:
        raise SweepError(f"{path}: cannot be read as JSON ({exc}).") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise SweepError(f"{path}: not a SpikeForge sweep result (schema {SCHEMA!r} expected).")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise SweepError(f"{path}: sweep schema version {doc.get('schema_version')}, this SpikeForge reads 1.")
    return doc
