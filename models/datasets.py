"""Data sets: the bundled 8 x 8 digits, and any user data set in ``.npz`` form.

A data set file holds ``x_train``, ``y_train``, ``x_test``, ``y_test``: images as unsigned
integers shaped ``(samples, H, W)`` or ``(samples, C, H, W)``, labels as integers
``0..classes-1``. The digits file ships with the package (licence: ``DATA-LICENSE.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import DatasetError, SpikeForgeError
from .npzio import read_npz

__all__ = ["Dataset", "load_digits", "load_npz_dataset", "DIGITS_PATH"]

DIGITS_PATH = Path(str(resources.files(__package__).joinpath("zoo", "digits.npz")))


@dataclass(frozen=True)
class Dataset:
    """Integer images ``(N, C, H, W)`` and labels ``(N,)`` for a fixed train/test split."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def classes(self) -> int:
        """Number of classes (largest label + 1)."""
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def load_npz_dataset(path: str | Path, name: str | None = None) -> Dataset:
    """Load and validate a data set file (see the module docstring for the layout)."""
    path = Path(path)
    try:
        _, arrays = read_npz(path)
    except SpikeForgeError as exc:
        raise DatasetError(str(exc)) from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
    if missing:
        raise DatasetError(
            f"{path}: missing key(s) {', '.join(missing)}; a data set needs x_train, y_train, x_test, y_test."
        )
    out = {}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype.kind not in "iu" or y.dtype.kind not in "iu":
            raise DatasetError(f"{path}: x_{split} and y_{split} must hold integers (quantized pixels, class ids).")
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise DatasetError(f"{path}: x_{split} must be (samples, H, W) or (samples, C, H, W), got {x.shape}.")
        if y.shape != (x.shape[0],):
            raise DatasetError(f"{path}: y_{split} has shape {y.shape}, expected ({x.shape[0]},).")
        if x.shape[0] == 0:
            raise DatasetError(f"{path}: the {split} split is empty.")
        if x.min() < 0 or y.min() < 0:
            raise DatasetError(f"{path}: pixels and labels must be non-negative in {split}.")
        out[f"x_{split}"], out[f"y_{split}"] = x.astype(np.int64), y.astype(np.int64)
    if out["x_train"].shape[1:] != out["x_test"].shape[1:]:
        tr, te = out["x_train"].shape[1:], out["x_test"].shape[1:]
        raise DatasetError(f"{path}: train images {tr} and test images {te} differ in shape.")
    return Dataset(name=name or path.stem, **out)


def load_digits() -> Dataset:
    """The bundled 8 x 8 handwritten digits (1,438 train, 359 test, pixels 0..16)."""
    return load_npz_dataset(DIGITS_PATH, name="digits")
