"""Hardware description and the compiler that maps SNN graphs onto a core array.

Reads :mod:`spikeforge.models` graphs; knows nothing of simulation or RTL. (Built in the
mapping issue; this package holds nothing yet.)
"""

__all__: list[str] = []
