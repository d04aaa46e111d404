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
