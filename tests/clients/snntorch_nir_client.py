"""A real NIR client: builds a small snnTorch network, exports it with snnTorch's own NIR exporter,
and simulates it with snnTorch. Runs in its own venv (scripts/test.sh: .nir-venv, snntorch 0.9.4,
nir 1.0.4, nirtorch 1.0, CPU torch 2.13.0); called by tests/test_nir.py.

    python snntorch_nir_client.py OUT_DIR SEED T [conv]

Writes OUT_DIR/net.nir and OUT_DIR/spikes.npz (x: the input; one (T, n) spike array per Leaky
layer, named by its NIR node; reset by subtraction, beta = 1, integer weights, biases, thresholds).
"""

import sys
from pathlib import Path

import nir
import numpy as np
import snntorch as snn
import torch
from snntorch import utils
from snntorch.export_nir import export_to_nir


def build(seed: int, conv: bool) -> tuple[torch.nn.Sequential, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def ints(shape, lo, hi):
        return torch.randint(lo, hi + 1, shape, generator=g).float()

    def leaky(thr, output=False):
        return snn.Leaky(beta=1.0, threshold=thr, init_hidden=True, output=output, reset_mechanism="subtract")

    if conv:
        layers = [
            torch.nn.Conv2d(1, 2, 3, stride=1, padding=1),
            leaky(4.0),
            torch.nn.Flatten(),
            torch.nn.Linear(2 * 6 * 6, 4),
            leaky(6.0, output=True),
        ]
        x = ints((1, 1, 6, 6), 0, 3)
    else:
        layers = [torch.nn.Linear(12, 8), leaky(5.0), torch.nn.Linear(8, 4), leaky(3.0, output=True)]
        x = ints((1, 12), 0, 7)
    net = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for m in net:
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.weight.copy_(ints(m.weight.shape, -3, 3))
                m.bias.copy_(ints(m.bias.shape, -1, 1))
    return net, x


def main(out: Path, seed: int, T: int, conv: bool) -> None:
    net, x = build(seed, conv)
    graph = export_to_nir(net, torch.zeros_like(x))
    nir.write(str(out / "net.nir"), graph)
    leaky_names = [str(i) for i, m in enumerate(net) if isinstance(m, snn.Leaky)]
    records = {n: [] for n in leaky_names}
    for n in leaky_names:
        net[int(n)].register_forward_hook(
            lambda mod, inp, res, n=n: records[n].append((res[0] if isinstance(res, tuple) else res).flatten().numpy())
        )
    utils.reset(net)
    with torch.no_grad():
        for _ in range(T):
            net(x)
    np.savez(out / "spikes.npz", x=x.numpy(), **{n: np.array(v, dtype=np.int8) for n, v in records.items()})


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), len(sys.argv) > 4 and sys.argv[4] == "conv")
