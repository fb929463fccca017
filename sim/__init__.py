"""Cycle-level, event-driven simulator of a mapped program (built in the simulator issue)."""

__all__: list[str] = []
