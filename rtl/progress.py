"""Stages of the long RTL runs (generation, Yosys, Icarus), for whoever wants to show them.

Generating the bundled model's array takes minutes and a co-simulation more, in a handful of long
calls (Amaranth's conversion, Yosys, the Icarus build, the bench's run). The library says which stage
starts with :func:`stage`; a caller that wants to show it (the CLI's progress line) installs a
callback for the duration of a call with :func:`reporting`. Without one, :func:`stage` does nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["reporting", "stage"]

_REPORTER: ContextVar[Callable[[str], None] | None] = ContextVar("spikeforge_rtl_progress", default=None)


@contextmanager
def reporting(callback: Callable[[str], None]) -> Iterator[None]:
    """Call ``callback(name)`` at each :func:`stage` started inside the ``with`` block."""
    token = _REPORTER.set(callback)
    try:
        yield
    finally:
        _REPORTER.reset(token)


def stage(name: str) -> None:
    """Say that stage ``name`` (a few words: "Yosys: RTLIL to SystemVerilog") starts now."""
    callback = _REPORTER.get()
    if callback is not None:
        callback(name)
