"""``python -m spikeforge``: the same as the ``spikeforge`` console command."""

from .cli import main

raise SystemExit(main())
