"""Quantization-aware training of the conversion-oriented transformer (needs the ``train`` extra).

Reproduces the bundled ``tiny-digits`` model::

    python -m spikeforge.models.train --out models/zoo/tiny-digits.npz

Training is on CPU, single-threaded and seeded; with the same PyTorch build it gives the same
weights. Inputs are integer images scaled by ``1 / input_max``; augmentation shifts each image
by up to one pixel. The checkpoint records the float QAT model's test accuracy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .architecture import ModelConfig
from .checkpoint import save_checkpoint
from .datasets import Dataset, load_digits, load_npz_dataset

__all__ = ["train", "main"]


def _shift(x: "torch.Tensor", gen: "torch.Generator") -> "torch.Tensor":  # noqa: F821
    import torch

    b = x.shape[0]
    pad = torch.nn.functional.pad(x, (1, 1, 1, 1))
    dy = torch.randint(0, 3, (b,), generator=gen)
    dx = torch.randint(0, 3, (b,), generator=gen)
    h, w = x.shape[2], x.shape[3]
    return torch.stack([pad[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


def train(
    data: Dataset,
    cfg: ModelConfig,
    epochs: int = 150,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
):
    """Train a :class:`CSDTransformer` with QCFS quantizers; return ``(checkpoint, history)``."""
    import torch

    from .torch_model import CSDTransformer, calibrate_thresholds, to_checkpoint

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(seed)
    model = CSDTransformer(cfg)
    x_tr = torch.tensor(data.x_train, dtype=torch.float32) / cfg.input_max
    y_tr = torch.tensor(data.y_train, dtype=torch.long)
    x_te = torch.tensor(data.x_test, dtype=torch.float32) / cfg.input_max
    y_te = torch.tensor(data.y_test, dtype=torch.long)
    calibrate_thresholds(model, x_tr[torch.randperm(len(x_tr), generator=gen)[:256]])
    lam_params = [p for n, p in model.named_parameters() if n.endswith(".lam")]
    other = [p for n, p in model.named_parameters() if not n.endswith(".lam")]
    opt = torch.optim.AdamW(
        [{"params": other, "weight_decay": 1e-4}, {"params": lam_params, "weight_decay": 0.0}], lr=lr
    )
    steps = epochs * ((len(x_tr) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    history = []
    t0 = time.time()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=epochs, desc="QAT epochs", unit="epoch")
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_tr), generator=gen)
        total = 0.0
        for i in range(0, len(x_tr), batch_size):
            idx = perm[i : i + batch_size]
            xb = _shift(x_tr[idx], gen)
            loss = torch.nn.functional.cross_entropy(model(xb), y_tr[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        model.eval()
        with torch.no_grad():
            acc = float((model(x_te).argmax(1) == y_te).float().mean())
        history.append({"epoch": epoch + 1, "loss": total / len(x_tr), "test_accuracy": acc})
        if bar is not None:
            bar.set_postfix(loss=f"{total / len(x_tr):.3f}", test_acc=f"{acc:.3f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    metrics = {
        "float_qat_test_accuracy_torch": history[-1]["test_accuracy"],
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(time.time() - t0, 1),
        "torch_version": torch.__version__,
        "dataset": data.name,
    }
    return to_checkpoint(model, metrics), history


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (``python -m spikeforge.models.train``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="checkpoint to write (.npz)")
    ap.add_argument("--data", type=Path, help="data set .npz (default: the bundled digits)")
    ap.add_argument("--config", type=Path, help="JSON file with ModelConfig fields (default: tiny-digits)")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args(argv)
    data = load_npz_dataset(args.data) if args.data else load_digits()
    cfg_json = json.loads(args.config.read_text()) if args.config else {}
    cfg_json.setdefault("image_shape", list(data.image_shape))
    cfg_json.setdefault("classes", data.classes)
    cfg_json.setdefault("input_max", int(max(data.x_train.max(), 1)))
    cfg = ModelConfig.from_json(cfg_json)
    ckpt, history = train(data, cfg, epochs=args.epochs, lr=args.lr, seed=args.seed)
    save_checkpoint(ckpt, args.out)
    print(f"float QAT test accuracy {history[-1]['test_accuracy']:.4f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
