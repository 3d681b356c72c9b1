"""Arithmetic that gives the same bits on every x86-64 CPU, BLAS kernel and BLAS thread count.

Everything that feeds the geometry (shape fit, radius evaluation, seeds, the morph) uses only
correctly rounded IEEE operations (+ - * / sqrt) applied element by element in a fixed order:
no BLAS (matmul, lstsq, ``np.linalg.norm`` without ``axis``: its dot product runs in OpenBLAS,
whose kernels sum in different orders and with or without FMA) and no transcendental function
(NumPy's SIMD loops and glibc's libm pick CPU-specific variants that differ in the last bit).
The few values that cannot avoid such functions are put on the ``GRID_UM`` grid before use.
"""

from __future__ import annotations

import math

import numpy as np

GRID_UM = 1e-9  # fitted coefficients, the reference radius and the seeds are rounded to this (µm)


def snap(x, grid: float = GRID_UM) -> np.ndarray:
    """``x`` rounded to the nearest multiple of ``grid`` = 10^-k (same shape, float64): k / 10^k."""
    scale = float(round(1.0 / grid))
    return np.rint(np.asarray(x, dtype=float) * scale) / scale


def norm_rows(X: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row of an (n, 3) array, summed in the order x, y, z."""
    X = np.asarray(X, dtype=float)
    return np.sqrt(X[:, 0] * X[:, 0] + X[:, 1] * X[:, 1] + X[:, 2] * X[:, 2])


def norm3(v) -> float:
    """Euclidean norm of one 3-vector (Python floats, fixed order)."""
    x, y, z = (float(c) for c in v)
    return math.sqrt(x * x + y * y + z * z)


def dot_rows(A: np.ndarray, b) -> np.ndarray:
    """A @ b for an (n, 3) array and a 3-vector, summed in the order x, y, z (no BLAS)."""
    A = np.asarray(A, dtype=float)
    return A[:, 0] * b[0] + A[:, 1] * b[1] + A[:, 2] * b[2]


def cbrt(a: float) -> float:
    """Cube root of a > 0 by Newton's iteration from above, stopped when it stops decreasing."""
    a = float(a)
    if not a > 0.0:
        raise ValueError(f"cbrt needs a positive number, got {a}")
    y = max(a, 1.0)
    while True:
        nxt = (2.0 * y + a / (y * y)) / 3.0
        if not nxt < y:
            return y
        y = nxt


def lstsq(B: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Least-squares solution of B c = r (B tall, well conditioned) through the normal equations.

    The entries of the Gram matrix and of B^T r are elementwise products summed along a
    contiguous axis by ``np.add.reduce`` (NumPy's pairwise summation: a fixed order of plain
    adds, no BLAS); the Cholesky factorisation and the two triangular solves sum with
    :func:`math.fsum` (correctly rounded, so independent of any order). ValueError if B^T B is
    not positive definite.
    """
    Bt = np.ascontiguousarray(np.asarray(B, dtype=float).T)
    r = np.ascontiguousarray(r, dtype=float)
    k = Bt.shape[0]
    G = np.zeros((k, k))
    for j in range(k):
        G[j, j:] = np.add.reduce(Bt[j] * Bt[j:], axis=1)
        G[j:, j] = G[j, j:]
    rhs = np.add.reduce(Bt * r, axis=1)
    L = np.zeros((k, k))
    for j in range(k):
        Lj = L[j, :j]
        d = math.fsum([G[j, j], *(-(Lj * Lj)).tolist()])
        if not d > 0.0:
            raise ValueError("least squares: the normal matrix is not positive definite")
        L[j, j] = math.sqrt(d)
        P = -(L[j + 1 :, :j] * Lj)
        for i in range(j + 1, k):
            L[i, j] = math.fsum([G[i, j], *P[i - j - 1].tolist()]) / L[j, j]
    y = np.zeros(k)
    for i in range(k):
        y[i] = math.fsum([rhs[i], *(-(L[i, :i] * y[:i])).tolist()]) / L[i, i]
    c = np.zeros(k)
    for i in range(k - 1, -1, -1):
        c[i] = math.fsum([y[i], *(-(L[i + 1 :, i] * c[i + 1 :])).tolist()]) / L[i, i]
    return c
