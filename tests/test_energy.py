"""The energy model: shipped profiles, the equations recomputed independently from the TOML files,
the fixed paper convention, user profiles, bad input, leakage and the break-even verdicts."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import ArrayConfig, ClockConfig, CoreConfig
from spikeforge.sim.counters import MEMORIES, Counters
from spikeforge.sim.energy import (
    EnergyError,
    EnergyProfile,
    break_even,
    energy_breakdown,
    load_profile,
    memory_bytes,
    parse_profile,
    shipped_profiles,
    spikes_per_synapse,
)

PROFILES_DIR = Path(__file__).resolve().parents[1] / "sim" / "profiles"
SHIPPED = ("horowitz45", "loihi", "paper")
HW = HardwareConfig()
SCALARS = (
    "synaptic_op_pj",
    "mac_pj",
    "neuron_update_pj",
    "spike_pj",
    "noc_flit_pj",
    "noc_hop_ew_pj",
    "noc_hop_ns_pj",
    "dram_pj_per_bit",
    "leakage_mw_per_core",
)

# Default core, by hand from docs/architecture.md section 3: 256 x 256 x 8 bits of synapses,
# 256 x 24-bit membranes, 256 x 3 x 24-bit parameters, 32 x 256 history bits, 1024 routing entries
# of 2*8 + 2 + 2 + 2 + 5 = 27 bits; running counts live in the synapse SRAM.
DEFAULT_BYTES = {
    "synapse": 65536,
    "membrane": 768,
    "params": 2304,
    "history": 1024,
    "routing": 3456,
    "counts": 65536,
}

USER_PROFILE = """
[profile]
name = "mine"
description = "test profile"
sources = "made up (assumed)"
components = ["synaptic_ops", "sram", "neuron_updates", "noc", "dram", "leakage"]
synaptic_op_pj = 1.5
mac_pj = 7.25
neuron_update_pj = 2.0
spike_pj = 0.5
noc_flit_pj = 3.0
noc_hop_ew_pj = 1.0
noc_hop_ns_pj = 2.0
dram_pj_per_bit = 10.0
leakage_mw_per_core = 0.25

[sram_read_pj_per_bit]
synapse = 0.1
membrane = 0.2
params = 0.3
history = 0.4
routing = 0.5
counts = 0.6

[sram_write_pj_per_bit]
synapse = 1.1
membrane = 1.2
params = 1.3
history = 1.4
routing = 1.5
counts = 1.6
"""


def write(tmp_path, text, name="profile.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def raw(name):
    with open(PROFILES_DIR / f"{name}.toml", "rb") as fh:
        return tomllib.load(fh)


def expected_per_bit(data, sizes):
    """Per-bit SRAM energies from the raw TOML, with numpy's interpolation in log-log space."""
    if "sram_by_size" in data:
        t = data["sram_by_size"]
        xs = np.log(np.array(t["array_bytes"], dtype=float))

        def at(col, m):
            return float(np.exp(np.interp(math.log(sizes[m]), xs, np.log(np.array(t[col], dtype=float))))) / 64

        return {m: at("read_pj_per_64bit", m) for m in MEMORIES}, {m: at("write_pj_per_64bit", m) for m in MEMORIES}
    zero = dict.fromkeys(MEMORIES, 0.0)
    return data.get("sram_read_pj_per_bit", zero), data.get("sram_write_pj_per_bit", zero)


def expected(data, c, sizes=DEFAULT_BYTES, mhz=500.0):
    """The equations of docs/energy.md evaluated from the raw TOML data, missing keys as 0."""
    p = {k: data["profile"].get(k, 0.0) for k in SCALARS}
    rd, wr = expected_per_bit(data, sizes)
    out = {
        "synaptic_ops": c.synaptic_ops * p["synaptic_op_pj"] + c.macs * p["mac_pj"],
        "sram": sum(c.sram_read_bits[m] * rd[m] + c.sram_write_bits[m] * wr[m] for m in MEMORIES),
        "neuron_updates": c.neuron_updates * p["neuron_update_pj"] + c.spikes * p["spike_pj"],
        "noc": c.noc_flits * p["noc_flit_pj"] + c.noc_hops_ew * p["noc_hop_ew_pj"] + c.noc_hops_ns * p["noc_hop_ns_pj"],
        "dram": c.dram_bytes * 8 * p["dram_pj_per_bit"],
        # mW * s -> pJ: 1e-3 W * cycles / (MHz * 1e6) s * 1e12 pJ/J
        "leakage": p["leakage_mw_per_core"] * 1e-3 * c.cores * c.cycles / (mhz * 1e6) * 1e12,
    }
    out["total"] = sum(out.values())
    return out


def sample_counters(**over):
    c = Counters(
        spikes=1200,
        synaptic_ops=345_678,
        macs=9_876,
        neuron_updates=40_960,
        sram_read_bits={m: 1000 * (i + 1) for i, m in enumerate(MEMORIES)},
        sram_write_bits={m: 700 * (i + 2) for i, m in enumerate(MEMORIES)},
        noc_flits=5_000,
        noc_hops_ew=7_000,
        noc_hops_ns=3_000,
        noc_stall_cycles=17,
        dram_bytes=4_096,
        cycles=250_000,
        cores=16,
        samples=4,
    )
    for k, v in over.items():
        setattr(c, k, v)
    return c


counts = st.integers(0, 10**12)
counters_st = st.builds(
    Counters,
    spikes=counts,
    synaptic_ops=counts,
    macs=counts,
    neuron_updates=counts,
    sram_read_bits=st.fixed_dictionaries({m: counts for m in MEMORIES}),
    sram_write_bits=st.fixed_dictionaries({m: counts for m in MEMORIES}),
    noc_flits=counts,
    noc_hops_ew=counts,
    noc_hops_ns=counts,
    noc_stall_cycles=counts,
    dram_bytes=counts,
    cycles=counts,
    cores=st.integers(1, 4096),
    samples=st.integers(1, 10_000),
)


def check(breakdown, want):
    for key, value in want.items():
        assert getattr(breakdown, key) == pytest.approx(value, rel=1e-12, abs=1e-9), key


# ---------------------------------------------------------------- shipped profiles


def test_shipped_names_and_files():
    assert shipped_profiles() == SHIPPED
    for name in SHIPPED:
        data = raw(name)
        assert data["profile"]["name"] == name
        prof = load_profile(name, HW)
        assert prof.name == name and prof.sources.strip() and prof.description.strip()


def test_shipped_numbers():
    h = load_profile("horowitz45", HW)
    assert (h.synaptic_op_pj, h.mac_pj, h.dram_pj_per_bit) == (0.1, 3.2, 20.0)
    assert h.not_modelled == ()
    p = load_profile("paper", HW)
    assert (p.synaptic_op_pj, p.mac_pj) == (0.9, 4.6)
    assert p.components == ("synaptic_ops",) and "compute only" in p.description.lower()
    assert p.not_modelled == ("sram", "neuron_updates", "noc", "dram", "leakage")
    lo = load_profile("loihi", HW)
    assert (lo.synaptic_op_pj, lo.neuron_update_pj, lo.noc_flit_pj) == (23.6, 81.0, 1.7)
    assert (lo.noc_hop_ew_pj, lo.noc_hop_ns_pj, lo.dram_pj_per_bit) == (3.0, 4.0, 12.45)
    assert lo.not_modelled == ("sram", "leakage")


def test_memory_sizes():
    assert memory_bytes(HW) == DEFAULT_BYTES
    hw = HardwareConfig(
        array=ArrayConfig(rows=8, cols=2),
        core=CoreConfig(axons=100, neurons=128, weight_bits=5, v_bits=17, spike_history_steps=3, routing_entries=7),
    )
    # synapse 100*128*5 = 64000 bits; membrane 128*17 = 2176; params 6528; history 384;
    # routing 7 * (2*7 + 1 + 3 + 2 + 2) = 154 bits -> 20 bytes (rounded up)
    assert memory_bytes(hw) == {
        "synapse": 8000,
        "membrane": 272,
        "params": 816,
        "history": 48,
        "routing": 20,
        "counts": 8000,
    }


def test_horowitz_sram_interpolation_by_hand():
    h = load_profile("horowitz45", HW)
    # 64 KiB is one of the five doublings from 32 KiB (20 pJ) to 1 MiB (100 pJ): 20 * 5 ** (1/5)
    assert h.sram_read_pj_per_bit["synapse"] == pytest.approx(20 * 5**0.2 / 64, rel=1e-12)
    assert h.sram_read_pj_per_bit["counts"] == h.sram_read_pj_per_bit["synapse"]
    for m in ("membrane", "params", "history", "routing"):  # below 8 KiB: the 8 KiB figure
        assert h.sram_read_pj_per_bit[m] == h.sram_write_pj_per_bit[m] == 10 / 64
        assert any(f"'{m}'" in note and "upper bound" in note for note in h.notes)
    exact = HardwareConfig(core=CoreConfig(axons=256, neurons=128))  # 32 KiB synapse SRAM
    assert load_profile("horowitz45", exact).sram_read_pj_per_bit["synapse"] == pytest.approx(20 / 64, rel=1e-12)
    huge = HardwareConfig(core=CoreConfig(axons=2048, neurons=1024))  # 2 MiB: clamped at 1 MiB
    prof = load_profile("horowitz45", huge)
    assert prof.sram_read_pj_per_bit["synapse"] == 100 / 64
    assert any("'synapse'" in note and "lower bound" in note for note in prof.notes)


@given(
    axons=st.integers(1, 4096),
    neurons=st.sampled_from([16, 64, 256, 1024, 4096]),
    weight_bits=st.integers(2, 16),
)
def test_horowitz_sram_interpolation_random_sizes(axons, neurons, weight_bits):
    hw = HardwareConfig(core=CoreConfig(axons=axons, neurons=neurons, weight_bits=weight_bits))
    prof = load_profile("horowitz45", hw)
    size = -(-axons * neurons * weight_bits // 8)
    rd, wr = expected_per_bit(raw("horowitz45"), {m: size for m in MEMORIES})
    assert prof.sram_read_pj_per_bit["synapse"] == pytest.approx(rd["synapse"], rel=1e-12)
    assert prof.sram_write_pj_per_bit["synapse"] == pytest.approx(wr["synapse"], rel=1e-12)
    assert 10 / 64 <= prof.sram_read_pj_per_bit["synapse"] <= 100 / 64


@pytest.mark.parametrize("name", SHIPPED)
def test_breakdown_equals_independent_sum(name):
    c = sample_counters()
    b = energy_breakdown(c, load_profile(name, HW), HW)
    want = expected(raw(name), c)
    check(b, want)
    assert b.total > 0 and b.scope == "run" and b.samples == 4
    assert sum(b.sram_by_memory.values()) == pytest.approx(b.sram, rel=1e-12)


@pytest.mark.parametrize("name", SHIPPED)
@given(c=counters_st)
def test_breakdown_random_counters(name, c):
    b = energy_breakdown(c, load_profile(name, HW), HW)
    check(b, expected(raw(name), c))
    check(b.per_inference(), {k: v / c.samples for k, v in expected(raw(name), c).items()})


def test_horowitz_default_breakdown_by_hand():
    c = Counters(synaptic_ops=1000, macs=10, sram_read_bits={"synapse": 6400}, cycles=500, cores=16)
    b = energy_breakdown(c, load_profile("horowitz45", HW), HW)
    assert b.synaptic_ops == pytest.approx(1000 * 0.1 + 10 * 3.2)
    assert b.sram == pytest.approx(100 * 20 * 5**0.2)  # 6400 bits = 100 64-bit reads of 64 KiB
    assert b.leakage == pytest.approx(0.1e-3 * 16 * 500 / 500e6 * 1e12)  # 1600 pJ
    assert b.noc == b.dram == b.neuron_updates == 0.0


# ---------------------------------------------------------------- paper convention


@given(c=counters_st)
def test_paper_convention_ignores_profile(c):
    want = 4.6 * c.macs + 0.9 * c.synaptic_ops
    values = [energy_breakdown(c, load_profile(n, HW), HW).paper_convention for n in SHIPPED]
    assert values == [pytest.approx(want, rel=1e-12)] * len(SHIPPED)


def test_paper_convention_with_user_profile(tmp_path):
    c = sample_counters()
    b = energy_breakdown(c, load_profile(str(write(tmp_path, USER_PROFILE)), HW), HW)
    assert b.paper_convention == pytest.approx(4.6 * 9_876 + 0.9 * 345_678)
    assert b.synaptic_ops == pytest.approx(7.25 * 9_876 + 1.5 * 345_678)  # the profile's own figures differ


def test_paper_profile_total_is_the_convention():
    c = sample_counters()
    b = energy_breakdown(c, load_profile("paper", HW), HW)
    assert b.total == pytest.approx(b.paper_convention, rel=1e-12)
    assert b.sram == b.noc == b.dram == b.leakage == b.neuron_updates == 0.0
    d = b.to_dict()
    assert d["not_modelled"] == ["sram", "neuron_updates", "noc", "dram", "leakage"]
    assert d["modelled"] == ["synaptic_ops"]


def test_to_dict_is_json_and_per_inference():
    c = sample_counters()
    for name in SHIPPED:
        prof = load_profile(name, HW)
        b = energy_breakdown(c, prof, HW)
        assert json.loads(json.dumps(b.to_dict()))["total"] == pytest.approx(b.total)
        assert json.loads(json.dumps(prof.to_dict()))["name"] == name
        per = b.per_inference()
        assert per.scope == "inference" and per.total == pytest.approx(b.total / 4)
        assert per.paper_convention == pytest.approx(b.paper_convention / 4)
        assert per.sram_by_memory["synapse"] == pytest.approx(b.sram_by_memory["synapse"] / 4)
        with pytest.raises(EnergyError, match="already per inference"):
            per.per_inference()
    assert json.loads(json.dumps(break_even(0.5)))["range"] == [0.15, 1.38]


# ---------------------------------------------------------------- user profiles


def test_user_profile_file(tmp_path):
    path = write(tmp_path, USER_PROFILE)
    for arg in (path, str(path)):
        prof = load_profile(arg, HW)
        assert prof.name == "mine" and prof.origin == str(path)
        assert prof.sram_read_pj_per_bit["routing"] == 0.5 and prof.sram_write_pj_per_bit["counts"] == 1.6
        assert prof.sram_array_bytes is None
    c = sample_counters()
    b = energy_breakdown(c, prof, HW)
    check(b, expected(tomllib.loads(USER_PROFILE), c))
    # by hand for one memory: synapse 1000 bits read at 0.1, 1400 bits written at 1.1
    assert b.sram_by_memory["synapse"] == pytest.approx(1000 * 0.1 + 1400 * 1.1)


def test_user_profile_with_size_table_and_omitted_components(tmp_path):
    text = (
        '[profile]\nname = "s"\ndescription = "d"\nsources = "s (assumed)"\ncomponents = ["sram", "dram"]\n'
        "dram_pj_per_bit = 2.0\n"
        "[sram_by_size]\narray_bytes = [1000, 100000]\nread_pj_per_64bit = [64.0, 640.0]\n"
        "write_pj_per_64bit = [128.0, 128.0]\n"
    )
    hw = HardwareConfig(core=CoreConfig(axons=100, neurons=80, weight_bits=10, lanes=16))  # synapse 10000 B
    prof = load_profile(write(tmp_path, text), hw)
    # 10000 B is half-way between 1000 and 100000 B in log size: 64 * sqrt(10) pJ per 64 bits
    assert prof.sram_read_pj_per_bit["synapse"] == pytest.approx(10**0.5)
    assert prof.sram_write_pj_per_bit["synapse"] == pytest.approx(2.0)
    assert prof.not_modelled == ("synaptic_ops", "neuron_updates", "noc", "leakage")
    b = energy_breakdown(sample_counters(), prof, hw)
    assert b.synaptic_ops == b.neuron_updates == b.noc == b.leakage == 0.0
    assert b.dram == pytest.approx(4096 * 8 * 2.0)
    with pytest.raises(EnergyError, match="other memory sizes"):
        energy_breakdown(sample_counters(), prof, HW)


def test_profile_for_other_hardware_refused():
    prof = load_profile("horowitz45", HardwareConfig(core=CoreConfig(weight_bits=4)))
    with pytest.raises(EnergyError, match="load it again with this hardware"):
        energy_breakdown(sample_counters(), prof, HW)
    # a change that leaves memory sizes alone is fine
    energy_breakdown(sample_counters(), prof, HardwareConfig(core=CoreConfig(weight_bits=4), clock=ClockConfig(200.0)))


# ---------------------------------------------------------------- bad input


def user(replace_from, replace_to):
    assert replace_from in USER_PROFILE
    return USER_PROFILE.replace(replace_from, replace_to, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[profile\nname = 'x'", "not valid TOML"),
        ("name = = 3", "not valid TOML"),
        (user("spike_pj = 0.5", "spike_pj = 0.5\nspikes_pj = 1.0"), "unknown key 'spikes_pj' in \\[profile\\]"),
        (user("routing = 0.5", "routing = 0.5\nrouter = 0.5"), "unknown key 'router' in \\[sram_read_pj_per_bit\\]"),
        (USER_PROFILE + "\n[extra]\na = 1\n", "unknown table or key 'extra'"),
        (user("mac_pj = 7.25", "mac_pj = -7.25"), "\\[profile\\] mac_pj = -7.25 is out of range"),
        (user("counts = 1.6", "counts = -1.6"), "\\[sram_write_pj_per_bit\\] counts = -1.6 is out of range"),
        (user("dram_pj_per_bit = 10.0", "dram_pj_per_bit = nan"), "dram_pj_per_bit = nan is out of range"),
        (user("dram_pj_per_bit = 10.0", "dram_pj_per_bit = true"), "dram_pj_per_bit must be a number"),
        (user("dram_pj_per_bit = 10.0", 'dram_pj_per_bit = "10"'), "dram_pj_per_bit must be a number"),
        (user("noc_flit_pj = 3.0\n", ""), "lacks 'noc_flit_pj', needed by component 'noc'"),
        (user("history = 0.4\n", ""), "\\[sram_read_pj_per_bit\\] lacks memory 'history'"),
        (user('"dram", ', ""), "dram_pj_per_bit belongs to component 'dram', which components does not list"),
        (user('"sram", ', ""), "\\[sram_read_pj_per_bit\\] is given but components does not list 'sram'"),
        (user('"leakage"]', '"leakage", "wires"]'), "components = .* is invalid"),
        (user('"leakage"]', '"leakage", "dram"]'), "components = .* is invalid"),
        (user('description = "test profile"\n', ""), "\\[profile\\] lacks 'description'"),
        (user('name = "mine"', 'name = ""'), "\\[profile\\] name must be a non-empty string"),
        ("[sram_by_size]\narray_bytes = [1]", "no \\[profile\\] table"),
        (
            USER_PROFILE + "[sram_by_size]\narray_bytes = [1]\nread_pj_per_64bit = [1.0]\nwrite_pj_per_64bit = [1.0]\n",
            "give either \\[sram_by_size\\] or",
        ),
    ],
)
def test_bad_profiles(tmp_path, text, message):
    with pytest.raises(EnergyError, match=message):
        load_profile(write(tmp_path, text), HW)


SIZE_HEAD = '[profile]\nname = "s"\ndescription = "d"\nsources = "s"\ncomponents = ["sram"]\n[sram_by_size]\n'


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("array_bytes = [2, 1]\nread_pj_per_64bit = [1.0, 1.0]\nwrite_pj_per_64bit = [1.0, 1.0]", "increasing"),
        ("array_bytes = [1.5]\nread_pj_per_64bit = [1.0]\nwrite_pj_per_64bit = [1.0]", "whole numbers"),
        ("array_bytes = [1, 2]\nread_pj_per_64bit = [1.0]\nwrite_pj_per_64bit = [1.0, 1.0]", "same length"),
        ("array_bytes = [1]\nread_pj_per_64bit = [0.0]\nwrite_pj_per_64bit = [1.0]", "read_pj_per_64bit\\[0\\] = 0.0"),
        ("array_bytes = [1]\nread_pj_per_64bit = [-1.0]\nwrite_pj_per_64bit = [1.0]", "out of range"),
        ("array_bytes = [1]\nread_pj_per_64bit = [1.0]", "write_pj_per_64bit must be a non-empty list"),
        ("array_bytes = [1]\nread_pj_per_64bit = [1.0]\nwrite_pj_per_64bit = [1.0]\nx = 1", "unknown key 'x'"),
    ],
)
def test_bad_size_tables(tmp_path, table, message):
    with pytest.raises(EnergyError, match=message):
        load_profile(write(tmp_path, SIZE_HEAD + table), HW)


def test_unknown_profile_name_lists_shipped(tmp_path):
    message = "unknown energy profile 'horowitz': not a shipped profile \\(horowitz45, loihi, paper\\)"
    with pytest.raises(EnergyError, match=message):
        load_profile("horowitz", HW)
    with pytest.raises(EnergyError, match="horowitz45, loihi, paper"):
        load_profile(tmp_path / "missing.toml", HW)
    with pytest.raises(EnergyError, match="no file at that path"):
        load_profile(str(tmp_path), HW)  # a folder is not a profile


def test_profile_dataclass_checks():
    with pytest.raises(EnergyError, match="mac_pj is non-zero but component 'synaptic_ops'"):
        EnergyProfile(name="x", description="d", sources="s", components=("dram",), mac_pj=1.0)
    with pytest.raises(EnergyError, match="spike_pj = -1 is out of range"):
        EnergyProfile(name="x", description="d", sources="s", components=("neuron_updates",), spike_pj=-1)
    with pytest.raises(EnergyError, match="hardware must be a HardwareConfig"):
        parse_profile(tomllib.loads(USER_PROFILE), None)


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"macs": -1}, "counter macs = -1 is out of range"),
        ({"cycles": 2.5}, "counter cycles must be a whole number"),
        ({"samples": 0}, "counter samples = 0 is out of range; allowed: >= 1"),
        ({"cores": 0}, "counter cores = 0 is out of range"),
        ({"sram_read_bits": {"synapse": 1, "dram": 4}}, "unknown memory 'dram'"),
        ({"sram_write_bits": {"synapse": -4}}, "sram_write_bits\\['synapse'\\] = -4 is out of range"),
    ],
)
def test_bad_counters(over, message):
    with pytest.raises(EnergyError, match=message):
        energy_breakdown(sample_counters(**over), load_profile("horowitz45", HW), HW)


def test_numpy_integer_counters_accepted():
    c = sample_counters(synaptic_ops=np.int64(10), macs=np.uint32(2))
    b = energy_breakdown(c, load_profile("paper", HW), HW)
    assert b.total == pytest.approx(10 * 0.9 + 2 * 4.6)


# ---------------------------------------------------------------- leakage


@pytest.mark.parametrize("name", ["horowitz45"])
def test_leakage_scales_with_cycles_and_frequency(name):
    def leak(cycles, mhz, cores=16):
        hw = HardwareConfig(clock=ClockConfig(mhz))
        return energy_breakdown(Counters(cycles=cycles, cores=cores), load_profile(name, hw), hw).leakage

    base = leak(1000, 500.0)
    assert base == pytest.approx(0.1 * 16 * 1000 / 500.0 * 1e3)  # 3200 pJ: 0.1 mW x 16 cores x 2 us
    assert leak(3000, 500.0) == pytest.approx(3 * base)
    assert leak(1000, 250.0) == pytest.approx(2 * base)
    assert leak(1000, 500.0, cores=4) == pytest.approx(base / 4)
    assert leak(0, 500.0) == 0.0


def test_leakage_not_modelled_is_zero():
    c = Counters(cycles=10**9, cores=256)
    assert energy_breakdown(c, load_profile("loihi", HW), HW).leakage == 0.0


# ---------------------------------------------------------------- break-even


@pytest.mark.parametrize(
    ("value", "start"),
    [
        (0.0, "below the range"),
        (0.1499, "below the range"),
        (0.15, "inside the range"),
        (0.5, "inside the range"),
        (1.38, "inside the range"),
        (1.3801, "above the range"),
        (40, "above the range"),
    ],
)
def test_break_even_verdicts(value, start):
    out = break_even(value)
    assert out["verdict"].startswith(start)
    assert out["spikes_per_synapse"] == value and out["range"] == [0.15, 1.38]
    if start == "below the range":
        assert out["verdict"] == "below the range: SNN energy advantage likely"


@pytest.mark.parametrize("value", [-0.1, float("nan"), float("inf"), "0.5", True])
def test_break_even_bad_input(value):
    with pytest.raises(EnergyError, match="spikes_per_synapse"):
        break_even(value)


def test_spikes_per_synapse():
    c = Counters(synaptic_ops=3000, samples=2)
    assert spikes_per_synapse(c, 1000) == 1.5
    assert break_even(spikes_per_synapse(c, 1000))["verdict"].startswith("above")
    with pytest.raises(EnergyError, match="synapses = 0 is out of range"):
        spikes_per_synapse(c, 0)
