"""The sequencer's ``phase`` codes (:class:`~spikeforge.rtl.sequencer.Sequencer`), in a module of their
own so that the cocotb benches that watch the array's ``phase`` load without Amaranth."""

from __future__ import annotations

__all__ = ["PH_IDLE", "PH_LOAD", "PH_I", "PH_P", "PH_F", "PH_ROUNDS", "PHASE_NAMES"]

#: No inference under way (before ``go``, or after the last step); swap mode's wait for the next
#: step's pieces (its DRAM stall); phases I, P and F (section 4); a rounds-mode step (section 7).
PH_IDLE, PH_LOAD, PH_I, PH_P, PH_F, PH_ROUNDS = 0, 1, 2, 3, 4, 5
PHASE_NAMES = {PH_IDLE: "idle", PH_LOAD: "load", PH_I: "I", PH_P: "P", PH_F: "F", PH_ROUNDS: "rounds"}
