"""Rebuild ``models/zoo/digits.npz`` from scikit-learn's copy of the UCI digits.

The shipped file was made with this script (scikit-learn 1.9.1); it is kept so the
split is reproducible, not run at install time. Split: for each class, 20 % of its
images (rounded) go to the test set, chosen by ``numpy.random.default_rng(0)``.

Usage: ``python scripts/make_digits_npz.py models/zoo/digits.npz`` (needs scikit-learn).
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.datasets import load_digits


def main(out: str) -> None:
    digits = load_digits()
    x = digits.images.astype(np.uint8)
    y = digits.target.astype(np.uint8)
    rng = np.random.default_rng(0)
    test: list[int] = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test.extend(idx[: int(round(0.2 * len(idx)))])
    mask = np.zeros(len(y), bool)
    mask[np.sort(np.array(test))] = True
    np.savez_compressed(out, x_train=x[~mask], y_train=y[~mask], x_test=x[mask], y_test=y[mask])


if __name__ == "__main__":
    main(sys.argv[1])
