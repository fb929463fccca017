"""Amaranth RTL of the core array and its cocotb benches (built in the RTL issue)."""

__all__: list[str] = []
