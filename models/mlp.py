"""A float GELU multi-layer perceptron: the network MBE conversion maps onto the hardware whole.

``tiny-digits-mlp`` (bundled) is trained in float on the bundled digits and converted without
retraining (:mod:`spikeforge.models.mbe_graph`)::

    h_0 = x / input_max;   h_l = GELU(W_l h_{l-1} + b_l)  (hidden layers);   logits = W_o h_L + b_o

Every operator of it has an MBE form the core array runs: weight x activation layers stay
linear and GELU is one MBE neuron. (The ViT's softmax, LayerNorm and activation x activation
products do not yet have one: see ``docs/mbe.md``.)

Weights are stored as ``.npz`` with a JSON header (``spikeforge-mlp`` version 1), read without
pickle. Reproduce the bundled model with ``python -m spikeforge.models.mlp --out
models/zoo/tiny-digits-mlp.npz`` (needs the ``train`` extra).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConversionError, FileFormatError
from .mbe_fit import gelu
from .npzio import read_npz, write_npz

__all__ = ["FORMAT", "MLP_PATH", "MLPCheckpoint", "MLPConfig", "load_mlp", "mlp_forward", "save_mlp", "train_mlp"]

FORMAT = "spikeforge-mlp"
MLP_PATH = Path(str(resources.files(__package__).joinpath("zoo", "tiny-digits-mlp.npz")))


@dataclass(frozen=True)
class MLPConfig:
    """Layer sizes of the MLP; ``input_max`` scales the integer input codes to ``[0, 1]``."""

    inputs: int = 64
    hidden: tuple[int, ...] = (96, 48)
    classes: int = 10
    input_max: float = 16.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.inputs < 1 or self.classes < 1 or not self.hidden or min(self.hidden) < 1:
            raise ConversionError(f"MLP sizes must be >= 1 with at least one hidden layer, got {self}.")

    @property
    def sizes(self) -> tuple[int, ...]:
        """``(inputs, *hidden, classes)``."""
        return (self.inputs, *self.hidden, self.classes)


@dataclass(frozen=True)
class MLPCheckpoint:
    """A trained MLP: configuration, ``weights[l]`` (out, in) and ``biases[l]``, training metrics."""

    config: MLPConfig
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    metrics: dict[str, Any] = field(default_factory=dict)


def save_mlp(path: str | Path, ckpt: MLPCheckpoint) -> None:
    """Write ``ckpt`` as ``.npz`` (float32 parameters, JSON header)."""
    header = {"format": FORMAT, "version": 1, "config": asdict(ckpt.config), "metrics": ckpt.metrics}
    arrays = {f"w{i}": np.asarray(w, np.float32) for i, w in enumerate(ckpt.weights)}
    arrays.update({f"b{i}": np.asarray(b, np.float32) for i, b in enumerate(ckpt.biases)})
    write_npz(path, header, arrays)


def load_mlp(path: str | Path = MLP_PATH) -> MLPCheckpoint:
    """Read an MLP checkpoint (default: the bundled ``tiny-digits-mlp``) and check every shape."""
    header, arrays = read_npz(path, expected_format=FORMAT)
    if header.get("version") != 1:
        raise FileFormatError(f"{path}: unsupported {FORMAT} version {header.get('version')!r}.")
    try:
        cfg = MLPConfig(**dict(header["config"]))
    except (KeyError, TypeError) as exc:
        raise FileFormatError(f"{path}: its MLP configuration is incomplete or malformed ({exc}).") from None
    sizes = cfg.sizes
    weights, biases = [], []
    for i in range(len(sizes) - 1):
        for key, shape in ((f"w{i}", (sizes[i + 1], sizes[i])), (f"b{i}", (sizes[i + 1],))):
            if key not in arrays:
                raise FileFormatError(f"{path}: missing parameter {key}.")
            if arrays[key].shape != shape:
                raise FileFormatError(f"{path}: parameter {key} has shape {arrays[key].shape}, expected {shape}.")
        weights.append(arrays[f"w{i}"].astype(np.float64))
        biases.append(arrays[f"b{i}"].astype(np.float64))
    return MLPCheckpoint(cfg, tuple(weights), tuple(biases), dict(header.get("metrics", {})))


def mlp_forward(ckpt: MLPCheckpoint, x: np.ndarray, act=gelu) -> np.ndarray:
    """Float logits of integer inputs ``x`` (batch, ...) flattened to ``inputs`` values.

    ``act(z, layer)``, when given with two parameters, lets a caller replace each hidden
    activation (calibration and the MBE model use it).
    """
    h = np.asarray(x, np.float64).reshape(len(x), -1) / ckpt.config.input_max
    if h.shape[1] != ckpt.config.inputs:
        raise ConversionError(f"the MLP takes {ckpt.config.inputs} inputs per sample, got {h.shape[1]}.")
    last = len(ckpt.weights) - 1
    for i, (w, b) in enumerate(zip(ckpt.weights, ckpt.biases)):
        h = h @ w.T + b
        if i < last:
            h = act(h) if act is gelu else act(h, i)
    return h


def train_mlp(cfg: MLPConfig | None = None, epochs: int = 150, lr: float = 3e-3, seed: int = 0) -> MLPCheckpoint:
    """Train the MLP in float on the bundled digits (CPU, seeded, deterministic; needs torch)."""
    import torch
    from torch import nn

    from .datasets import load_digits

    cfg = MLPConfig() if cfg is None else cfg
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = load_digits()
    x = torch.tensor(data.x_train.reshape(len(data.x_train), -1) / cfg.input_max, dtype=torch.float32)
    y = torch.tensor(data.y_train, dtype=torch.long)
    layers: list[nn.Module] = []
    sizes = cfg.sizes
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    net = nn.Sequential(*layers)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * -(-len(x) // 64))
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx], label_smoothing=0.05).backward()
            opt.step()
            sched.step()
    linears = [m for m in net if isinstance(m, nn.Linear)]
    ckpt = MLPCheckpoint(
        cfg,
        tuple(m.weight.detach().numpy().astype(np.float64) for m in linears),
        tuple(m.bias.detach().numpy().astype(np.float64) for m in linears),
    )
    acc = float(np.mean(mlp_forward(ckpt, data.x_test).argmax(1) == data.y_test))
    metrics = {"test_accuracy": acc, "epochs": epochs, "seed": seed, "torch": torch.__version__}
    return MLPCheckpoint(ckpt.config, ckpt.weights, ckpt.biases, metrics)


def main(argv: list[str] | None = None) -> None:
    """Train ``tiny-digits-mlp`` and write it."""
    ap = argparse.ArgumentParser(prog="python -m spikeforge.models.mlp", description=main.__doc__)
    ap.add_argument("--out", type=Path, default=MLP_PATH)
    ap.add_argument("--epochs", type=int, default=150)
    args = ap.parse_args(argv)
    ckpt = train_mlp(epochs=args.epochs)
    save_mlp(args.out, ckpt)
    print(json.dumps(ckpt.metrics))


if __name__ == "__main__":
    main()
