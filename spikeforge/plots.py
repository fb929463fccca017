"""Plots of a sweep (or of the demo's single point), drawn with matplotlib's Agg backend.

Each figure is :data:`FIGSIZE` inches at :data:`DPI` (800 x 500 pixels), names its energy
profile in the title, and labels its axes with units. Inputs are the rows of ``sweep.csv``
(:func:`spikeforge.sweep.result_row` plus ``label``) and a result's ``per_population`` table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .models.errors import SpikeForgeError
from .sim.energy import COMPONENTS

__all__ = [
    "FIGSIZE",
    "DPI",
    "PLOT_FILES",
    "plot_energy_breakdown",
    "plot_latency_cycles",
    "plot_edp_pareto",
    "plot_firing_rate",
    "plot_energy_vs_paper",
    "plot_fpga",
    "FPGA_PLOT",
    "pareto_front",
    "draw_all",
]

FIGSIZE = (8.0, 5.0)
DPI = 100
PLOT_FILES = (
    "energy_breakdown.png",
    "latency_cycles.png",
    "edp_pareto.png",
    "firing_rate.png",
    "energy_vs_paper.png",
)
#: Drawn as well when the sweep built each point for an FPGA (``[sweep] fpga``).
FPGA_PLOT = "fpga.png"
_COMPONENT_NAMES = {
    "synaptic_ops": "synaptic ops",
    "sram": "on-core SRAM",
    "neuron_updates": "neuron updates",
    "noc": "network on chip",
    "dram": "DRAM",
    "leakage": "leakage",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _ok(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows that have results (failed points have an ``error`` and no figures)."""
    return [r for r in rows if not r.get("error")]


def _profiles(rows: list[dict[str, Any]]) -> str:
    names = sorted({str(r["energy_profile"]) for r in rows})
    return f"profile {names[0]}" if len(names) == 1 else "profiles " + ", ".join(names)


def _xlabels(rows: list[dict[str, Any]]) -> list[str]:
    return [str(r["label"]).replace(" (", "\n(").replace(", ", "\n") for r in rows]


def _plain_log_ticks(axis) -> None:
    """Log-scale ticks written as plain numbers (40, 100, 200) rather than 4 x 10^1."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def _new(title: str):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.set_title(title)
    return fig, ax


def _energy_unit(pj: np.ndarray) -> tuple[float, str]:
    """The scale (pJ per unit) and unit that keep the largest value readable."""
    top = float(np.max(np.abs(pj))) if np.size(pj) else 0.0
    for scale, unit in ((1e9, "mJ"), (1e6, "uJ"), (1e3, "nJ")):
        if top >= scale:
            return scale, unit
    return 1.0, "pJ"


def _si_time(s: np.ndarray) -> tuple[np.ndarray, str]:
    top = float(np.max(s)) if len(s) else 0.0
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us")):
        if top >= scale:
            return s / scale, unit
    return s / 1e-9, "ns"


def plot_energy_breakdown(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Stacked bars: energy per inference by component at each point (x: cores and array)."""
    rows = _ok(rows)
    fig, ax = _new(f"Energy per inference by component ({_profiles(rows)})")
    x = np.arange(len(rows))
    parts = np.array([[float(r[f"energy_{c}_pj"]) for r in rows] for c in COMPONENTS]).reshape(len(COMPONENTS), -1)
    scale, unit = _energy_unit(parts.sum(0))
    bottom = np.zeros(len(rows))
    colors = _pyplot().get_cmap("tab10").colors
    for i, c in enumerate(COMPONENTS):
        values = parts[i] / scale
        if not values.any():
            continue  # a component the profile does not model
        ax.bar(x, values, bottom=bottom, label=_COMPONENT_NAMES[c], color=colors[i], width=0.6)
        bottom += values
    ax.set_xticks(x, _xlabels(rows))
    ax.set_xlabel("design point (cores, array)")
    ax.set_ylabel(f"energy per inference ({unit})")
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, Path(path))


def plot_latency_cycles(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Two panels: latency per inference (time) and cycles per inference, at each point."""
    rows = _ok(rows)
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=FIGSIZE)
    x = np.arange(len(rows))
    lat, unit = _si_time(np.array([float(r["latency_s"]) for r in rows]))
    cycles = np.array([float(r["cycles_per_inference"]) for r in rows])
    clocks = sorted({float(r["clock_mhz"]) for r in rows})
    ax1.bar(x, lat, color="tab:blue", width=0.6)
    ax1.set_ylabel(f"latency per inference ({unit})")
    ax1.set_title("Latency at " + ", ".join(f"{c:g}" for c in clocks) + " MHz")
    ax2.bar(x, cycles, color="tab:orange", width=0.6)
    ax2.set_ylabel("clock cycles per inference")
    ax2.set_title("Cycles (critical path, DRAM stalls included)")
    for ax in (ax1, ax2):
        ax.set_xticks(x, _xlabels(rows), fontsize="small")
        ax.set_xlabel("design point (cores, array)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"Latency and cycles per inference ({_profiles(rows)})")
    return _save(fig, Path(path))


def pareto_front(energy: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats in both energy and latency, by latency.

    Point ``i`` is dominated when some ``j`` has ``energy[j] <= energy[i]`` and
    ``latency[j] <= latency[i]`` with at least one strict.
    """
    energy, latency = np.asarray(energy, float), np.asarray(latency, float)
    keep = []
    for i in range(len(energy)):
        dominated = np.any(
            (energy <= energy[i]) & (latency <= latency[i]) & ((energy < energy[i]) | (latency < latency[i]))
        )
        if not dominated:
            keep.append(i)
    return np.array(sorted(keep, key=lambda i: (latency[i], energy[i])), dtype=np.int64)


def plot_edp_pareto(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Energy against latency per inference, the Pareto front joined, lowest EDP named."""
    rows = _ok(rows)
    e_pj = np.array([float(r["energy_total_pj"]) for r in rows])
    scale, eunit = _energy_unit(e_pj)
    e = e_pj / scale
    t, tunit = _si_time(np.array([float(r["latency_s"]) for r in rows]))
    edp = np.array([float(r["edp_pj_s"]) for r in rows])
    fig, ax = _new(f"Energy-delay trade-off ({_profiles(rows)})")
    ax.scatter(t, e, s=40, color="tab:gray", label="design point", zorder=2)
    front = pareto_front(e, t)
    if len(front):
        ax.plot(t[front], e[front], "o-", color="tab:red", label="Pareto front", zorder=3)
        best = int(np.argmin(edp))
        ax.scatter([t[best]], [e[best]], s=160, facecolors="none", edgecolors="k", zorder=4, label="lowest EDP")
    for i, r in enumerate(rows):
        # short names, alternately above and below, so that neighbours do not overprint
        name = str(r["label"]).split(" (")[-1].rstrip(")").replace("), ", ", ")
        ax.annotate(f"{name}\nEDP {edp[i]:.3g} pJ s", (t[i], e[i]), textcoords="offset points",
                    xytext=(8, 8 if i % 2 == 0 else -22), fontsize="x-small")  # fmt: skip
    if len(rows) > 1 and t.min() > 0 and e.min() > 0:
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_log_ticks(ax.xaxis)
        _plain_log_ticks(ax.yaxis)
    ax.margins(0.2)
    ax.set_xlabel(f"latency per inference ({tunit})")
    ax.set_ylabel(f"energy per inference ({eunit})")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3, which="both")
    return _save(fig, Path(path))


def plot_firing_rate(per_population: dict[str, dict[str, Any]], path: str | Path, title_extra: str = "") -> Path:
    """Horizontal bars: spikes per neuron per time step of every spiking population, in graph order."""
    names = [n for n, p in per_population.items() if p.get("kind") not in ("input", "output")]
    rates = np.array([float(per_population[n]["firing_rate"]) for n in names])
    fig, ax = _new("Firing rate per layer" + (f" ({title_extra})" if title_extra else ""))
    y = np.arange(len(names))
    ax.barh(y, rates * 100, color="tab:green")
    ax.set_yticks(y, names, fontsize="x-small" if len(names) > 20 else "small")
    ax.invert_yaxis()  # first layer at the top
    mbe = any(per_population[n].get("kind") == "mbe" for n in names)
    ax.set_xlabel("spikes per neuron per time step (%)" + (" (MBE units: per basis)" if mbe else ""))
    ax.set_ylabel("population (graph order)")
    if len(rates):
        mean = float(rates.mean()) * 100
        ax.axvline(mean, color="k", ls="--", lw=1, label=f"mean {mean:.1f} %")
        ax.legend(loc="lower right", fontsize="small")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, Path(path))


def plot_energy_vs_paper(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Grouped bars (log scale): the hardware model's energy beside the paper convention's."""
    rows = _ok(rows)
    fig, ax = _new(f"Hardware-model energy vs paper convention ({_profiles(rows)})")
    x = np.arange(len(rows))
    hw = np.array([float(r["energy_total_pj"]) for r in rows])
    paper = np.array([float(r["energy_paper_convention_pj"]) for r in rows])
    ax.bar(x - 0.2, hw, width=0.4, color="tab:blue", label="hardware model (all components)")
    ax.bar(x + 0.2, paper, width=0.4, color="tab:orange", label="paper convention (0.9 pJ/AC + 4.6 pJ/MAC)")
    for i in range(len(rows)):
        if paper[i] > 0:
            ratio = hw[i] / paper[i]
            ax.annotate(f"x{ratio:.0f}", (x[i] - 0.2, hw[i]), ha="center", va="bottom", fontsize="small")
    if len(rows) and min(hw.min(), paper.min()) > 0:
        ax.set_yscale("log")
        ax.set_ylim(top=float(max(hw.max(), paper.max())) * 30)  # room for the legend above the bars
    ax.set_xticks(x, _xlabels(rows))
    ax.set_xlabel("design point (cores, array)")
    ax.set_ylabel("energy per inference (pJ, log scale)")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(axis="y", alpha=0.3, which="both")
    return _save(fig, Path(path))


def plot_fpga(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Logic cells (bars) and Fmax (line, right axis) of each point's FPGA build."""
    rows = [r for r in _ok(rows) if r.get("fpga_target")]
    built = [r.get("fpga_luts") not in (None, "") for r in rows]
    targets = sorted({str(r["fpga_target"]) for r in rows})
    fig, ax = _new(f"FPGA build of each design point ({', '.join(targets)})")
    x = np.arange(len(rows))
    luts = [float(r["fpga_luts"]) if b else 0.0 for r, b in zip(rows, built)]
    ax.bar(x, luts, color="tab:purple", width=0.6, label="logic cells (LUT4)")
    for i, b in enumerate(built):
        if not b:  # the row's fpga_error says why (usually: does not fit the device)
            ax.annotate("does not fit" if "does not fit" in str(rows[i]["fpga_error"]) else "not built",
                        (x[i], 0), ha="center", va="bottom", rotation=90, fontsize="small")  # fmt: skip
    ax.set_ylabel("logic cells (LUT4)")
    ax.set_xticks(x, _xlabels(rows))
    ax.set_xlabel("design point (cores, array)")
    ax2 = ax.twinx()
    fmax = [float(r["fpga_fmax_mhz"]) if b else np.nan for r, b in zip(rows, built)]
    ax2.plot(x, fmax, "o-", color="tab:red", label="Fmax")
    ax2.set_ylabel("Fmax after place and route (MHz)")
    ax.set_ylim(0, max(luts + [1.0]) * 1.3)  # headroom for the legend
    ax2.set_ylim(0, np.nanmax(fmax + [1.0]) * 1.3)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper left", fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, Path(path))


def draw_all(
    rows: list[dict[str, Any]], per_population: dict[str, dict[str, Any]], out: str | Path, model: str = ""
) -> list[Path]:
    """Draw every plot of :data:`PLOT_FILES` (and :data:`FPGA_PLOT` when there are FPGA figures) into ``out``.

    Returns the paths written.

    ``per_population`` is one result's table (firing rates do not depend on the hardware);
    ``model`` names the model in the firing-rate plot's title.
    """
    out = Path(out)
    if not _ok(rows):
        raise SpikeForgeError("no point has results to plot (every point failed or none ran).")
    out.mkdir(parents=True, exist_ok=True)
    return [
        plot_energy_breakdown(rows, out / PLOT_FILES[0]),
        plot_latency_cycles(rows, out / PLOT_FILES[1]),
        plot_edp_pareto(rows, out / PLOT_FILES[2]),
        plot_firing_rate(per_population, out / PLOT_FILES[3], model),
        plot_energy_vs_paper(rows, out / PLOT_FILES[4]),
    ] + ([plot_fpga(rows, out / FPGA_PLOT)] if any(r.get("fpga_target") for r in rows) else [])
