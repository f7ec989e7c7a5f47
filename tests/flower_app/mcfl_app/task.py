"""The model and data: logistic regression in numpy on scikit-learn's breast
cancer dataset, standardised, the last 100 rows held out, the rest split
unevenly between the partitions (the first gets the most)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.datasets import load_breast_cancer

Arrays = list[npt.NDArray[np.float64]]
HELDOUT = 100


def _all() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    return x[order].astype(np.float64), y[order].astype(np.float64)


def initial() -> Arrays:
    return [np.zeros(30), np.zeros(1)]


def heldout() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    x, y = _all()
    return x[-HELDOUT:], y[-HELDOUT:]


def partition(i: int, n: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Partition ``i`` of ``n``: weights n, n-1, ... 1 of the training rows, so
    partition 0 is the largest; with 3: 4/7, 2/7 and 1/7 of them."""
    x, y = _all()
    x, y = x[:-HELDOUT], y[:-HELDOUT]
    weights = [2 ** (n - 1 - k) for k in range(n)]
    bounds = np.cumsum([0, *weights]) * len(y) // sum(weights)
    return x[bounds[i] : bounds[i + 1]], y[bounds[i] : bounds[i + 1]]


def _p(w: Arrays, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 1 / (1 + np.exp(-(x @ w[0] + w[1][0])))


def train(
    w: Arrays, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], steps: int, lr: float
) -> Arrays:
    coef, bias = w[0].copy(), w[1].copy()
    for _ in range(steps):
        p = _p([coef, bias], x)
        coef -= lr * x.T @ (p - y) / len(y)
        bias -= lr * np.array([np.mean(p - y)])
    return [coef, bias]


def loss(w: Arrays, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float:
    p = np.clip(_p(w, x), 1e-9, 1 - 1e-9)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def accuracy(w: Arrays, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> float:
    return float(np.mean((_p(w, x) > 0.5) == (y > 0.5)))
