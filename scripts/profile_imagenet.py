"""Where one ImageNet-size inference (``bench_sim.py``'s part 3) spends its time, kernel by kernel.

    NUMBA_CACHE_DIR=$(mktemp -d) python scripts/profile_imagenet.py

Builds the shape as ``bench_sim.py`` does, then runs one inference with a timer around each
``rounds``-mode kernel the engine calls step by step: the first call of each includes its Numba
compilation (an empty ``NUMBA_CACHE_DIR`` makes that a cold start), the rest is run time. Prints
the inference's wall time, the first calls and the rest, in seconds.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import numpy as np

from spikeforge.mapping import HardwareConfig, compile
from spikeforge.models import convert
from spikeforge.models.synthetic import IMAGENET_BN_BIAS_MEAN, imagenet_config, random_checkpoint
from spikeforge.sim import Simulator
from spikeforge.sim import kernels as K

KERNELS = ("round_rows", "gen_round_events", "partial_sums", "fire", "round_timing")


def main() -> None:
    graph = convert(random_checkpoint(imagenet_config(), 0, IMAGENET_BN_BIAS_MEAN))
    sim = Simulator(compile(graph, HardwareConfig()))
    x = np.random.default_rng(0).integers(0, 256, graph.input.shape)
    first: dict[str, float] = {}
    rest: Counter = Counter()
    for name in KERNELS:  # the engine looks the kernels up on the module at each call
        kernel = getattr(K, name)

        def timed(*args, _kernel=kernel, _name=name):
            t0 = time.perf_counter()
            out = _kernel(*args)
            dt = time.perf_counter() - t0
            if _name in first:
                rest[_name] += dt
            else:
                first[_name] = dt
            return out

        setattr(K, name, timed)
    t0 = time.perf_counter()
    sim.run(x)
    wall = time.perf_counter() - t0
    r = lambda d: {k: round(v, 2) for k, v in d.items()}  # noqa: E731
    print(json.dumps({"inference_s": round(wall, 2), "first_calls_s": r(first), "rest_s": r(rest)}))


if __name__ == "__main__":
    main()
