"""Design-space sweeps: rows equal single simulations, reruns resume, Dask equals local, plots exist."""

from __future__ import annotations

import csv
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spikeforge.cli import main
from spikeforge.mapping import HardwareError, load_sweep
from spikeforge.plots import DPI, FIGSIZE, PLOT_FILES, draw_all, pareto_front
from spikeforge.sweep import METRIC_COLUMNS, SweepError, load_sweep_result, result_row, run_sweep, sweep_points
from spikeforge.workflow import simulate_model

THREE = """
[sweep]
model = "tiny-digits"
samples = 3
"array.rows" = [1, 2, 4]
"array.cols" = [1, 2, 4]
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def three_point(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("three")
    sweep = write(tmp, THREE)
    return sweep, run_sweep(sweep, tmp / "out", workers=1, progress=False)


def test_three_points_give_three_rows_equal_to_single_simulations(three_point):
    sweep, result = three_point
    rows = read_csv(result.out / "sweep.csv")
    assert [r["point"] for r in rows] == ["0", "1", "2"]
    assert list(rows[0]) == ["point", "array.rows", "array.cols", "label", *METRIC_COLUMNS]
    assert [r["cores"] for r in rows] == ["1", "4", "16"]
    assert [r["mode"] for r in rows] == ["rounds", "rounds", "swap"]
    assert result.computed == 3 and result.reused == 0 and not result.failed
    for point, row in zip(sweep_points(load_sweep(sweep)), result.rows):
        alone = simulate_model("tiny-digits", point.hardware, samples=3, progress=False)
        expected = result_row(alone.to_dict(), point.hardware)
        assert {k: row[k] for k in METRIC_COLUMNS} == expected, point.label
    # the CSV holds the same values as the rows, written in full precision
    assert float(rows[2]["energy_total_pj"]) == result.rows[2]["energy_total_pj"]
    assert int(rows[1]["cycles_per_inference"].split(".")[0]) == int(result.rows[1]["cycles_per_inference"])
    doc = load_sweep_result(result.out)
    assert doc["complete"] and doc["points_done"] == 3 and doc["rows"] == result.rows


def test_rerun_reuses_every_point_and_rewrites_the_same_csv(three_point, tmp_path):
    sweep, result = three_point
    before = (result.out / "sweep.csv").read_text()
    again = run_sweep(sweep, result.out, workers=1, progress=False)
    assert again.computed == 0 and again.reused == 3
    assert (result.out / "sweep.csv").read_text() == before


def test_torn_or_stale_point_files_are_recomputed(three_point, tmp_path):
    sweep, result = three_point
    out = tmp_path / "copy"
    (out / "points").mkdir(parents=True)
    keys = [p.key for p in sweep_points(load_sweep(sweep))]
    for key in keys:
        (out / "points" / f"{key}.json").write_text((result.out / "points" / f"{key}.json").read_text())
    (out / "points" / f"{keys[0]}.json").write_text('{"key": "')  # cut short
    record = json.loads((out / "points" / f"{keys[1]}.json").read_text())
    record["key"] = "0" * 20  # another point's result under this name
    (out / "points" / f"{keys[1]}.json").write_text(json.dumps(record))
    again = run_sweep(sweep, out, workers=1, progress=False)
    assert again.computed == 2 and again.reused == 1
    assert (out / "sweep.csv").read_text() == (result.out / "sweep.csv").read_text()


@pytest.mark.slow
def test_killed_sweep_resumes_with_the_same_rows_and_no_duplicates(three_point, tmp_path):
    sweep, result = three_point
    # the last point is slow (1 x 1 rounds over 40 images), so the kill lands before it ends
    slow = write(tmp_path, THREE.replace('"array.rows" = [1, 2, 4]', '"array.rows" = [2, 4, 1]').replace(
        '"array.cols" = [1, 2, 4]', '"array.cols" = [2, 4, 1]').replace("samples = 3", "samples = 40"))  # fmt: skip
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "spikeforge", "sweep", str(slow), "--out", str(out), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(list((out / "points").glob("*.json"))) >= 1:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "points").glob("*.json")))
    assert 1 <= done < 3, f"the kill should land mid-sweep ({done} points were on disk)"
    if (out / "sweep.json").exists():  # the kill may land before the first table is written
        assert not json.loads((out / "sweep.json").read_text())["complete"]

    resumed = run_sweep(slow, out, workers=1, progress=False)
    assert resumed.reused == done and resumed.computed == 3 - done
    fresh = run_sweep(slow, tmp_path / "fresh", workers=1, progress=False)
    rows = read_csv(out / "sweep.csv")
    assert [r["point"] for r in rows] == ["0", "1", "2"]  # each point once
    assert rows == read_csv(tmp_path / "fresh" / "sweep.csv")
    assert resumed.rows == fresh.rows


def test_parallel_local_processes_give_the_same_csv(three_point, tmp_path):
    sweep, result = three_point
    run_sweep(sweep, tmp_path / "par", workers=2, progress=False)
    assert (tmp_path / "par" / "sweep.csv").read_text() == (result.out / "sweep.csv").read_text()


def test_dask_cluster_gives_the_same_csv_as_local(three_point, tmp_path):
    import distributed  # the cluster extra, installed by the README's test command

    sweep, result = three_point
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as c:
        run_sweep(sweep, tmp_path / "dask", scheduler=c.scheduler_address, progress=False)
    assert (tmp_path / "dask" / "sweep.csv").read_text() == (result.out / "sweep.csv").read_text()


def test_unreachable_scheduler_fails_fast_with_a_clear_message(tmp_path):
    sweep = write(tmp_path, THREE)
    t0 = time.time()
    with pytest.raises(SweepError, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        run_sweep(sweep, tmp_path / "out", scheduler="tcp://127.0.0.1:9", progress=False)
    assert time.time() - t0 < 15


def test_a_point_that_cannot_be_mapped_fails_alone(tmp_path, capsys):
    sweep = write(tmp_path, '[sweep]\nsamples = 2\nmode = "product"\n"core.slots" = [1, 4]\n')
    result = run_sweep(sweep, tmp_path / "out", workers=1, progress=False)
    assert [bool(r["error"]) for r in result.rows] == [True, False]
    assert "needs 2 projection slots" in result.rows[0]["error"]
    assert result.rows[0]["energy_total_pj"] is None and result.rows[1]["energy_total_pj"] > 0
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "cli"), "--quiet", "--workers", "1"]) == 1
    assert "failed: population 'b0.att' needs 2 projection slots" in capsys.readouterr().out


def test_cli_sweep_and_plot_write_readable_images(three_point, tmp_path, capsys):
    sweep, result = three_point
    out = tmp_path / "cli"
    assert main(["sweep", str(sweep), "--out", str(out), "--quiet", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "16 cores (4x4)" in text and "3 points simulated" in text
    for name in PLOT_FILES:
        assert png_size(out / name) == (FIGSIZE[0] * DPI, FIGSIZE[1] * DPI)
        assert (out / name).stat().st_size > 10_000  # drawn, not blank
    assert main(["plot", str(out), "--out", str(tmp_path / "redrawn")]) == 0
    assert sorted(p.name for p in (tmp_path / "redrawn").iterdir()) == sorted(PLOT_FILES)


def test_demo_writes_the_plots(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--samples", "5", "--quiet"]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["plots"] == list(PLOT_FILES)
    for name in PLOT_FILES:
        assert png_size(tmp_path / name) == (800, 500)


def test_pareto_front():
    # (energy, latency): 0 and 2 trade off; 1 is beaten by 0 in both; 3 ties 2 in energy, slower
    assert pareto_front([1.0, 2.0, 0.5, 0.5], [2.0, 3.0, 4.0, 5.0]).tolist() == [0, 2]
    assert pareto_front([1.0], [1.0]).tolist() == [0]


def test_plot_refuses_results_without_points(tmp_path):
    with pytest.raises(Exception, match="no point has results"):
        draw_all([{"error": "x"}], {}, tmp_path)


# bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sweep]\nsamples = 3\n", "lists no parameter; the sweep would be empty"),
        ('[sweep]\n"core.lanez" = [4]\n', "unknown parameter 'core.lanez'"),
        ('[sweep]\n"core.lanes" = [4, 5, 8]\n', "'core.lanes' entry 1 \\(5\\) is invalid"),
        ('[sweep]\n"core.lanes" = [4, "x"]\n', "'core.lanes' entry 1 \\('x'\\) is invalid"),
        ('[sweep]\nsamples = 0\n"core.lanes" = [4]\n', "samples must be a whole number >= 1"),
        ('[sweep]\nmodel = 3\n"core.lanes" = [4]\n', "model must be a non-empty string"),
    ],
)
def test_bad_sweep_files_are_named(tmp_path, text, message, capsys):
    path = write(tmp_path, text)
    with pytest.raises(HardwareError, match=message):
        run_sweep(path, tmp_path / "out", progress=False)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "spikeforge sweep: error:" in capsys.readouterr().err


def test_plot_of_a_directory_without_results(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no sweep results here" in capsys.readouterr().err
    (tmp_path / "sweep.json").write_text('{"schema": "something-else"}')
    assert main(["plot", str(tmp_path)]) == 2
    assert "not a SpikeForge sweep result" in capsys.readouterr().err


def test_unwritable_result_directory(tmp_path):
    sweep = write(tmp_path, THREE)
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(Exception, match="cannot write results to"):
        run_sweep(sweep, blocker / "out", progress=False)


def test_the_hardware_files_energy_profile_is_used_and_can_be_swept(tmp_path):
    sweep = write(tmp_path, '[sweep]\nsamples = 1\n"energy.profile" = ["horowitz45", "paper"]\n')
    rows = run_sweep(sweep, tmp_path / "out", workers=1, progress=False).rows
    assert [r["energy_profile"] for r in rows] == ["horowitz45", "paper"]
    assert rows[0]["synaptic_ops_per_inference"] == rows[1]["synaptic_ops_per_inference"]
    assert rows[0]["energy_total_pj"] != rows[1]["energy_total_pj"]
    assert rows[0]["energy_paper_convention_pj"] == rows[1]["energy_paper_convention_pj"]
