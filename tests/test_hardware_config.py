"""The hardware file: defaults, shipped examples, the sweep section, and one clear sentence for
every bad input."""

from __future__ import annotations

import numpy as np
import pytest

from spikeforge.cli import main
from spikeforge.mapping import (
    HardwareConfig,
    HardwareError,
    MappingError,
    compile,
    load_hardware,
    load_program,
    load_sweep,
    save_program,
)
from spikeforge.mapping.hardware import ArrayConfig, CoreConfig


def write(tmp_path, text, name="hw.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("name", "cores"), [("1x1", 1), ("4x4", 16), ("16x16", 256)])
def test_shipped_examples(name, cores):
    hw = load_hardware(f"configs/array-{name}.toml")
    assert hw.array.cores == cores
    assert hw.core == CoreConfig() and hw.noc.router_buffer_flits == 4
    if name == "4x4":
        assert hw == HardwareConfig()  # the default array is the 4 x 4 file


def test_empty_file_is_the_default(tmp_path):
    assert load_hardware(write(tmp_path, "")) == HardwareConfig()


def test_fingerprint_changes_with_any_value():
    assert HardwareConfig().fingerprint() != HardwareConfig(core=CoreConfig(lanes=8)).fingerprint()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[array\nrows = 2", "not valid TOML"),
        ("[core]\nlanez = 4", "unknown key 'lanez' in \\[core\\]; allowed keys: axons"),
        ("[cores]\nlanes = 4", "unknown section \\[cores\\]"),
        ("[array]\nrows = 0", "\\[array\\] rows = 0 is out of range; allowed: 1..64"),
        ("[array]\nrows = 0\ncols = 0", "\\[array\\] rows = 0 is out of range"),
        ("[core]\nneurons = -4", "\\[core\\] neurons = -4 is out of range; allowed: 1..65536"),
        ("[core]\naxons = 2.5", "\\[core\\] axons must be a whole number in 1..65536"),
        ("[core]\nlanes = 3", "lanes = 3 must divide neurons = 256"),
        ("[core]\nneuron_models = ['lif']", "neuron_models has \\['lif'\\]"),
        ("[clock]\nfrequency_mhz = 0", "\\[clock\\] frequency_mhz = 0 is out of range"),
        ("array = 3", "array must be a \\[array\\] table"),
        ("[energy]\nprofile = ''", "profile must be a profile name"),
    ],
)
def test_bad_hardware_files(tmp_path, text, message):
    with pytest.raises(HardwareError, match=message):
        load_hardware(write(tmp_path, text))


def test_missing_hardware_file(tmp_path):
    with pytest.raises(HardwareError, match="no such hardware file"):
        load_hardware(tmp_path / "nope.toml")


def test_sweep_section(tmp_path):
    spec = load_sweep(write(tmp_path, '[sweep]\n"array.rows" = [1, 2, 4]\n"array.cols" = [1, 2, 4]\n'))
    assert [hw.array.cores for hw in spec.configs()] == [1, 4, 16]
    spec = load_sweep(
        write(
            tmp_path,
            '[core]\nlanes = 8\n[sweep]\nmode = "product"\n"core.lanes" = [4, 8]\n'
            '"clock.frequency_mhz" = [200.0, 500.0]\n',
        )
    )
    assert len(spec.points) == 4 and spec.base.core.lanes == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[array]\nrows = 2", "no \\[sweep\\] section"),
        ("[sweep]\nmode = 'zip'", "lists no parameter; the sweep would be empty"),
        ('[sweep]\n"core.lanez" = [1]', "unknown parameter 'core.lanez'"),
        ('[sweep]\n"speed" = [1]', "unknown parameter 'speed'"),
        ('[sweep]\n"core.lanes" = []', "must be a non-empty list"),
        ('[sweep]\n"array.rows" = [1, 0, 4]', "'array.rows' entry 1 \\(0\\) is invalid"),
        ('[sweep]\n"array.rows" = [1, 2]\n"array.cols" = [1]', "same length"),
        ('[sweep]\nmode = "grid"\n"array.rows" = [1]', "mode must be 'zip' or 'product'"),
        (
            '[sweep]\nmode = "product"\n"core.neurons" = [64, 48]\n"core.lanes" = [16, 32]',
            "sweep point 3 .* invalid: .*lanes = 32 must divide neurons = 48",
        ),
    ],
)
def test_bad_sweeps(tmp_path, text, message):
    with pytest.raises(HardwareError, match=message):
        load_sweep(write(tmp_path, text))


def test_weights_wider_than_the_core(tiny_graph):
    with pytest.raises(MappingError, match="8-bit but the core stores 4-bit weights"):
        compile(tiny_graph, HardwareConfig(core=CoreConfig(weight_bits=4)))


def test_membranes_wider_than_the_core(tiny_graph):
    with pytest.raises(MappingError, match="24-bit membranes but the core has 16"):
        compile(tiny_graph, HardwareConfig(core=CoreConfig(v_bits=16)))


def test_population_that_cannot_fit_even_multiplexed(tiny_graph):
    # a 3x3 kernel over 16 channels needs 9 words per input channel: more than a 1 x 16-lane core
    with pytest.raises(MappingError, match="population 'tok.0'.*raise \\[core\\] axons"):
        compile(tiny_graph, HardwareConfig(core=CoreConfig(axons=1, neurons=16, lanes=16)))


def test_counts_wider_than_the_core(tiny_ckpt):
    from spikeforge.models import convert

    graph = convert(tiny_ckpt, timesteps=8)
    with pytest.raises(MappingError, match="needs 4 bits; \\[core\\] count_bits is 3"):
        compile(graph, HardwareConfig(core=CoreConfig(count_bits=3)))


def test_spike_history_too_short(tiny_graph):
    with pytest.raises(MappingError, match="Raise \\[core\\] spike_history_steps to 13"):
        compile(tiny_graph, HardwareConfig(core=CoreConfig(spike_history_steps=4)))


def test_too_few_slots_and_routing_entries(tiny_graph):
    with pytest.raises(MappingError, match="needs 2 projection slots.*has 1"):
        compile(tiny_graph, HardwareConfig(core=CoreConfig(slots=1)))
    with pytest.raises(MappingError, match="routing entries; \\[core\\] routing_entries is 2"):
        compile(tiny_graph, HardwareConfig(array=ArrayConfig(16, 16), core=CoreConfig(routing_entries=2)))


def test_program_for_another_hardware(tiny_graph, tmp_path):
    save_program(compile(tiny_graph, HardwareConfig()), tmp_path / "p")
    with pytest.raises(HardwareError, match="compiled for another hardware description"):
        load_program(tmp_path / "p", HardwareConfig(array=ArrayConfig(2, 2)))


def test_cli_map(tmp_path, capsys):
    out = tmp_path / "prog"
    assert (
        main(["map", "--model", "tiny-digits", "--hardware", "configs/array-4x4.toml", "--out", str(out), "--images"])
        == 0
    )
    text = capsys.readouterr().out
    assert "mode swap: 44 pieces" in text and "average hop distance" in text
    program = load_program(out)
    assert (out / "mapping.json").is_file() and (out / "images" / "manifest.json").is_file()
    data = (out / "images" / "piece-00000-synapse.bin").read_bytes()
    assert len(data) == program.images(0)["synapse"].nbytes
    # a graph file is accepted as the model too
    assert main(["map", "--model", str(out / "graph.npz"), "--hardware", "configs/array-16x16.toml"]) == 0
    assert "mode resident" in capsys.readouterr().out
    np.testing.assert_array_equal(program.plan.live, load_program(out).plan.live)


def test_cli_map_errors(tmp_path, capsys):
    bad = write(tmp_path, "[array]\nrows = 0\n")
    assert main(["map", "--hardware", str(bad)]) == 2
    assert "rows = 0 is out of range; allowed: 1..64" in capsys.readouterr().err
