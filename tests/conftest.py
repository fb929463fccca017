"""Shared fixtures: the bundled model and its graph; ``random_checkpoint`` for random small models;
the ``icarus`` marker of tests that run Icarus Verilog."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import settings

from spikeforge.mapping import HardwareConfig
from spikeforge.mapping.hardware import ArrayConfig, CoreConfig
from spikeforge.models import ModelConfig, convert, load_digits, load_model
from spikeforge.models.synthetic import random_checkpoint  # noqa: F401  (re-exported for tests)
from spikeforge.sim.lowering import state_width

settings.register_profile("spikeforge", deadline=None, max_examples=20, derandomize=True)
settings.load_profile("spikeforge")

#: Whether Icarus Verilog is on PATH (tests that only elaborate an exported file check it themselves).
HAVE_ICARUS = shutil.which("iverilog") is not None


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "icarus: runs Icarus Verilog: skipped without iverilog, an error under SPIKEFORGE_REQUIRE_PEERS"
    )


def pytest_runtest_setup(item):
    """An ``icarus`` test without iverilog: skipped, or an error where ``SPIKEFORGE_REQUIRE_PEERS`` is set (CI)."""
    if item.get_closest_marker("icarus") is None or HAVE_ICARUS:
        return
    if os.environ.get("SPIKEFORGE_REQUIRE_PEERS"):
        pytest.fail("iverilog is missing but SPIKEFORGE_REQUIRE_PEERS is set (scripts/test.sh installs it).")
    pytest.skip("iverilog missing (scripts/test.sh installs it)")


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture(scope="session")
def tiny_ckpt():
    return load_model("tiny-digits")


@pytest.fixture(scope="session")
def tiny_graph(tiny_ckpt):
    return convert(tiny_ckpt)


@pytest.fixture(scope="session")
def mbe_mlp8():
    """``tiny-digits-mlp`` converted by MBE at T = 8 (cached fits, no fitting)."""
    from spikeforge.models.mbe_graph import mlp_to_mbe_graph

    return mlp_to_mbe_graph(timesteps=8, fit=False)


def widths(program) -> tuple[int, ...]:
    """The simulator's state widths a program may run with: 64 always, 32 where its bounds prove it fits."""
    return (64, 32) if state_width(program.graph) == 32 else (64,)


def hw_of(rows: int, cols: int, **core) -> HardwareConfig:
    """A ``rows x cols`` array with the given ``[core]`` values (defaults elsewhere)."""
    return HardwareConfig(array=ArrayConfig(rows, cols), core=CoreConfig(**core))


def small_config(stages: int, chans: int, heads: int, head_dim: int, mlp: int, blocks: int) -> ModelConfig:
    """A small square-image transformer for property tests (3 classes, L = 3)."""
    return ModelConfig(
        image_shape=(1, 4 * 2**stages, 4 * 2**stages),
        input_max=15,
        tokenizer_channels=(chans,) * stages,
        dim=heads * head_dim,
        heads=heads,
        mlp_hidden=mlp,
        blocks=blocks,
        classes=3,
        levels=3,
    )
