"""Shared fixtures: the bundled model and its graph; ``random_checkpoint`` for random small models."""

from __future__ import annotations

import pytest
from hypothesis import settings

from spikeforge.models import convert, load_digits, load_model
from spikeforge.models.synthetic import random_checkpoint  # noqa: F401  (re-exported for tests)

settings.register_profile("spikeforge", deadline=None, max_examples=20, derandomize=True)
settings.load_profile("spikeforge")


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture(scope="session")
def tiny_ckpt():
    return load_model("tiny-digits")


@pytest.fixture(scope="session")
def tiny_graph(tiny_ckpt):
    return convert(tiny_ckpt)
