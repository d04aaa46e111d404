"""Canonical benchmark problems (see ../shared/BENCHMARKS.md), generated with NumPy only.

Every benchmark script, in whichever venv it runs, builds its data from these functions so
that sdeppl and each peer see exactly the same numbers.
"""

from __future__ import annotations

import numpy as np

OU_TRUE = {"theta": 0.5, "mu": 1.0, "sigma": 0.3}


def ou_nuts_data(num_points: int = 1000, dt: float = 0.1, seed: int = 0):
    """OU-NUTS: exact OU path, theta=0.5, mu=1, sigma=0.3, x0=0, observed without noise.

    Returns ``(ts, xs)``, both float64 arrays of shape ``(num_points,)``; ``xs[0] = 0``.
    """
    theta, mu, sigma = OU_TRUE["theta"], OU_TRUE["mu"], OU_TRUE["sigma"]
    rng = np.random.default_rng(seed)
    decay = np.exp(-theta * dt)
    sd = np.sqrt(sigma**2 / (2 * theta) * (1 - decay**2))
    xs = np.empty(num_points)
    xs[0] = 0.0
    eps = rng.standard_normal(num_points - 1)
    for k in range(num_points - 1):
        xs[k + 1] = mu + (xs[k] - mu) * decay + sd * eps[k]
    ts = dt * np.arange(num_points)
    return ts, xs


def ou_kf_data(
    num_points: int = 1000, dt: float = 0.1, noise_sd: float = 0.05, seed: int = 0
):
    """OU-KF: the OU-NUTS path observed with Gaussian noise of sd ``noise_sd``."""
    ts, xs = ou_nuts_data(num_points, dt, seed)
    rng = np.random.default_rng(seed + 1)
    return ts, xs + noise_sd * rng.standard_normal(num_points)


DOUBLE_WELL = {
    "sigma": 0.5,
    "x0": 0.0,
    "t_end": 10.0,
    "num_steps": 1000,
    "num_paths": 10_000,
}
"""SDE-SIM: dx = (x - x^3) dt + 0.5 dW, x0 = 0, T = 10, 1000 Euler steps, 10,000 paths."""


# ---------------------------------------------------------------- OSC-KF and CAR(d)-KF
OSC_TRUE = {"k": 1.0, "c": 0.2, "q": 0.5, "r": 0.1}
"""OSC-KF: dx = A x dt + L dW, A = [[0, 1], [-k, -c]], L = diag(0, q); y = x_0 + r eps."""


def car_coefficients(d: int) -> np.ndarray:
    r"""Coefficients ``(a_1, ..., a_d)`` of a stable CAR(d) polynomial
    $s^d + a_1 s^{d-1} + \dots + a_d$, the product of damped-oscillator factors
    $s^2 + c s + j$ ($j = 1, 2, \dots$; ``c = OSC_TRUE["c"]``) and, for odd ``d``, $s + 1$.

    ``d = 2`` is the OSC-KF oscillator ($k = 1$, $c = 0.2$); ``d = 1`` is an OU process
    with rate 1.
    """
    poly = np.array([1.0])
    for j in range(1, d // 2 + 1):
        poly = np.polymul(poly, [1.0, OSC_TRUE["c"], float(j)])
    if d % 2:
        poly = np.polymul(poly, [1.0, 1.0])
    return poly[1:]


def car_matrices(coef: np.ndarray, q: float):
    """Companion drift ``A (d, d)`` and diffusion ``L = diag(0, ..., 0, q)`` of CAR(d)."""
    d = len(coef)
    A = np.eye(d, k=1)
    A[-1] = -np.asarray(coef)[::-1]
    L = np.zeros((d, d))
    L[-1, -1] = q
    return A, L


def exact_linear_transition(A: np.ndarray, LLt: np.ndarray, h: float):
    """``(Phi, Q)`` of dx = A x dt + L dW over a step ``h`` (matrix exponential, Van Loan)."""
    from scipy.linalg import expm

    d = A.shape[0]
    vl = np.block([[-A, LLt], [np.zeros((d, d)), A.T]])
    f = expm(vl * h)
    phi = f[d:, d:].T
    q = phi @ f[:d, d:]
    return phi, 0.5 * (q + q.T)


def linear_kf_data(d: int, num_points: int, seed: int = 0):
    """CAR(d)-KF data: first coordinate of a CAR(d) SDE observed with noise sd ``r`` at
    irregular times (gaps ~ Uniform(0.05, 0.15)); x0 ~ N(0, I); exact transitions.

    Returns ``(ts, ys)``, shapes ``(num_points,)``. ``d = 2`` is OSC-KF.
    """
    A, L = car_matrices(car_coefficients(d), OSC_TRUE["q"])
    rng = np.random.default_rng(seed)
    gaps = rng.uniform(0.05, 0.15, num_points - 1)
    ts = np.concatenate([[0.0], np.cumsum(gaps)])
    x = rng.standard_normal(d)
    xs = np.empty((num_points, d))
    xs[0] = x
    for i, h in enumerate(gaps):
        phi, q = exact_linear_transition(A, L @ L.T, h)
        w, v = np.linalg.eigh(q)  # Q is near-singular for large d: no Cholesky
        x = phi @ x + v @ (np.sqrt(np.clip(w, 0.0, None)) * rng.standard_normal(d))
        xs[i + 1] = x
    ys = xs[:, 0] + OSC_TRUE["r"] * rng.standard_normal(num_points)
    return ts, ys
