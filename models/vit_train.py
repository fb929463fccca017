"""Float training of the standard ViT ``tiny-digits-vit`` (needs the ``train`` extra).

Reproduces the bundled model::

    python -m spikeforge.models.vit_train --out models/zoo/tiny-digits-vit.npz

CPU, single-threaded, seeded and deterministic: the same PyTorch build on the same CPU gives the same
weights (MKL and oneDNN choose float32 kernels by CPU; elsewhere they agree to about 1e-4).
Plain float training (no quantization): the MBE conversion is training-free. AdamW, one-cycle
learning rate, label smoothing 0.05, random shifts of up to one pixel.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .datasets import load_digits
from .vit import ViTCheckpoint, ViTConfig, save_vit, vit_forward

__all__ = ["train_vit", "main"]


def _model(cfg: ViTConfig):
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1 = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
            self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
            self.proj = nn.Linear(cfg.dim, cfg.dim)
            self.ln2 = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
            self.fc1 = nn.Linear(cfg.dim, cfg.mlp_hidden)
            self.fc2 = nn.Linear(cfg.mlp_hidden, cfg.dim)

        def forward(self, h):
            b, n, d = h.shape
            nh, dh = cfg.heads, d // cfg.heads
            q, k, v = self.qkv(self.ln1(h)).reshape(b, n, 3, nh, dh).permute(2, 0, 3, 1, 4)
            att = torch.softmax(q @ k.transpose(-1, -2) / dh**0.5, dim=-1)
            h = h + self.proj((att @ v).transpose(1, 2).reshape(b, n, d))
            act = nn.functional.gelu if cfg.activation == "gelu" else nn.functional.silu
            return h + self.fc2(act(self.fc1(self.ln2(h))))

    class ViT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(cfg.patch_dim, cfg.dim)
            self.pos = nn.Parameter(torch.randn(cfg.tokens, cfg.dim) * 0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(cfg.blocks))
            self.ln_f = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
            self.head = nn.Linear(cfg.dim, cfg.classes)

        def forward(self, x):
            b = x.shape[0]
            c, hh, ww = cfg.image_shape
            p = cfg.patch
            x = x.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, cfg.tokens, -1)
            h = self.embed(x) + self.pos
            for blk in self.blocks:
                h = blk(h)
            return self.head(self.ln_f(h.mean(dim=1)))

    return ViT()


def train_vit(cfg: ViTConfig | None = None, epochs: int = 120, batch_size: int = 64, lr: float = 3e-3, seed: int = 0):
    """Train the ViT on the bundled digits; return ``(ViTCheckpoint, history)``."""
    import torch

    cfg = ViTConfig() if cfg is None else cfg
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(seed)
    data = load_digits()
    model = _model(cfg)
    x_tr = torch.tensor(data.x_train, dtype=torch.float32) / cfg.input_max
    y_tr = torch.tensor(data.y_train)
    x_te = torch.tensor(data.x_test, dtype=torch.float32) / cfg.input_max
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * ((len(x_tr) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    history = []
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        total = 0.0
        for i in range(0, len(x_tr), batch_size):
            idx = perm[i : i + batch_size]
            xb = torch.nn.functional.pad(x_tr[idx], (1, 1, 1, 1))
            dy, dx = (int(v) for v in torch.randint(0, 3, (2,), generator=gen))
            xb = xb[:, :, dy : dy + cfg.image_shape[1], dx : dx + cfg.image_shape[2]]
            loss = loss_fn(model(xb), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        history.append(total / len(x_tr))
    model.eval()
    with torch.no_grad():
        torch_acc = float((model(x_te).argmax(1).numpy() == data.y_test).mean())
    params = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    ckpt = ViTCheckpoint(cfg, params, {})
    np_acc = float((vit_forward(ckpt, data.x_test).argmax(1) == data.y_test).mean())
    metrics = {"test_accuracy_torch": torch_acc, "test_accuracy_numpy": np_acc, "epochs": epochs, "seed": seed}
    return ViTCheckpoint(cfg, params, metrics), history


def main(argv: list[str] | None = None) -> None:
    """Train ``tiny-digits-vit`` and write it."""
    ap = argparse.ArgumentParser(prog="python -m spikeforge.models.vit_train", description=main.__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    ckpt, history = train_vit(epochs=args.epochs, seed=args.seed)
    save_vit(args.out, ckpt)
    print(json.dumps({**ckpt.metrics, "final_loss": history[-1], "seconds": round(time.time() - t0, 1)}))
    print(json.dumps(asdict(ckpt.config)))


if __name__ == "__main__":
    main()
