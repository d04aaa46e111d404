"""SMC benchmark problems (SPECS-smc.md section 6, BENCHMARKS.md SV-PF / LG-PMMH), NumPy only.

Both the sdeppl side (sdeppl's venv) and the ``particles`` peer
(``/work/venv-particles``, ``benchmarks/peers/particles_pf.py``) build their data from
these functions, so the two see exactly the same numbers.  This module must import only
NumPy (and the standard library).

Time indexing follows ``particles``: observations ``y_0 .. y_{T-1}``, and ``y_0`` is
observed given ``X_0`` (there is no unobserved initial state).

**LG (B1, and LG-PMMH with other parameters)** - ``particles.kalman.LinearGauss`` with
``sigma0=None``::

    X_0 ~ N(0, sigma_x^2 / (1 - rho^2))         (the stationary law)
    X_t = rho X_{t-1} + sigma_x U_t,  U_t ~ N(0, 1),   t = 1 .. T-1
    Y_t = X_t + sigma_y V_t,          V_t ~ N(0, 1),   t = 0 .. T-1

B1: rho = 0.9, sigma_x = sigma_y = 1, T = 100, ``lg_data()`` (seed 0).

**SV (B2)** - ``particles.state_space_models.StochVol`` (checked in particles 0.4)::

    X_0 ~ N(mu, sigma^2 / (1 - rho^2))
    X_t = mu + rho (X_{t-1} - mu) + sigma U_t,  U_t ~ N(0, 1),   t = 1 .. T-1
    Y_t | X_t ~ N(0, exp(X_t)),  i.e.  Y_t = exp(X_t / 2) V_t,    t = 0 .. T-1

B2: mu = -1, rho = 0.95, sigma = 0.3, T = 1000, ``sv_data()`` (seed 0).

Generation: ``np.random.default_rng(seed)`` (PCG64); first the T state innovations
``standard_normal(T)`` (the first one scaled to X_0's sd), then the T observation noises
``standard_normal(T)``.  ``fingerprint`` gives a checksum to compare across venvs
(NumPy 1.26 in the peer venv and NumPy 2.x in sdeppl's give bit-identical arrays:
``exp`` is taken with ``math.exp``, as NumPy's own differs in the last bit between
versions).

``python smc_problems.py [--out DIR]`` writes ``lg_b1.npy`` and ``sv_b2.npy`` (the
observations y, float64, shape (T,)) and ``smc_problems.json`` (parameters and
fingerprints) to DIR (default ``/tmp/sdeppl_smc_problems``).
"""

from __future__ import annotations

import math

import numpy as np

LG_B1 = {"rho": 0.9, "sigma_x": 1.0, "sigma_y": 1.0, "T": 100, "seed": 0}
"""B1: the linear-Gaussian bootstrap-PF scaling problem."""

LG_PMMH = {"rho": 0.9, "sigma_x": 1.0, "sigma_y": 0.5, "T": 100, "seed": 0}
"""BENCHMARKS.md LG-PMMH (priors rho ~ U(-1, 1), sigma_x, sigma_y ~ HalfNormal(2))."""

SV_B2 = {"mu": -1.0, "rho": 0.95, "sigma": 0.3, "T": 1000, "seed": 0}
"""B2 / SV-PF: the stochastic-volatility problem."""

PF_SIZES = (10**2, 10**3, 10**4, 10**5, 10**6)
"""B1 sweep of particle numbers."""


def lg_simulate(
    rho: float, sigma_x: float, sigma_y: float, T: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the LG model (see the module docstring); returns ``(x, y)``, shape (T,)."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(T)
    v = rng.standard_normal(T)
    x = np.empty(T)
    x[0] = sigma_x / np.sqrt(1.0 - rho**2) * u[0]
    for t in range(1, T):
        x[t] = rho * x[t - 1] + sigma_x * u[t]
    return x, x + sigma_y * v


def lg_data(**overrides) -> np.ndarray:
    """Observations of B1 (``LG_B1``, optionally with entries replaced), shape (T,)."""
    p = {**LG_B1, **overrides}
    return lg_simulate(p["rho"], p["sigma_x"], p["sigma_y"], p["T"], p["seed"])[1]


def lg_kalman_loglik(
    y: np.ndarray, rho: float, sigma_x: float, sigma_y: float, var0: float | None = None
) -> float:
    """Exact log p(y_0 .. y_{T-1}) of the LG model by the Kalman filter.

    ``var0`` is Var(X_0); ``None`` means the stationary ``sigma_x^2 / (1 - rho^2)``.
    """
    m, P = 0.0, (sigma_x**2 / (1.0 - rho**2) if var0 is None else var0)
    ll = 0.0
    for t, yt in enumerate(np.asarray(y, dtype=float)):
        if t > 0:  # predict
            m, P = rho * m, rho**2 * P + sigma_x**2
        S = P + sigma_y**2
        r = yt - m
        ll += -0.5 * (np.log(2.0 * np.pi * S) + r**2 / S)
        K = P / S
        m, P = m + K * r, (1.0 - K) * P
    return float(ll)


def sv_simulate(
    mu: float, rho: float, sigma: float, T: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate the SV model (see the module docstring); returns ``(x, y)``, shape (T,)."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(T)
    v = rng.standard_normal(T)
    x = np.empty(T)
    x[0] = mu + sigma / np.sqrt(1.0 - rho**2) * u[0]
    for t in range(1, T):
        x[t] = mu + rho * (x[t - 1] - mu) + sigma * u[t]
    # math.exp (the platform libm), not np.exp: NumPy's SIMD exp differs in the last bit
    # between NumPy 1.26 and 2.x, and the two venvs must get bit-identical data.
    return x, np.array([math.exp(0.5 * xt) for xt in x]) * v


def sv_data(**overrides) -> np.ndarray:
    """Observations of B2 (``SV_B2``, optionally with entries replaced), shape (T,)."""
    p = {**SV_B2, **overrides}
    return sv_simulate(p["mu"], p["rho"], p["sigma"], p["T"], p["seed"])[1]


def fingerprint(a: np.ndarray) -> dict:
    """A few numbers that identify an array (to check both sides use the same data)."""
    a = np.asarray(a, dtype=float)
    return {
        "shape": list(a.shape),
        "sum": float(a.sum()),
        "sum_sq": float((a**2).sum()),
        "first": [float(v) for v in a[:3]],
        "last": float(a[-1]),
    }


def write_data(out_dir: str = "/tmp/sdeppl_smc_problems") -> dict:
    """Write the B1 and B2 observations and a JSON description to ``out_dir``."""
    import json
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lg, sv = lg_data(), sv_data()
    np.save(out / "lg_b1.npy", lg)
    np.save(out / "sv_b2.npy", sv)
    info = {
        "lg_b1": {
            "params": LG_B1,
            "file": str(out / "lg_b1.npy"),
            "fingerprint": fingerprint(lg),
            "kalman_loglik": lg_kalman_loglik(
                lg, LG_B1["rho"], LG_B1["sigma_x"], LG_B1["sigma_y"]
            ),
        },
        "sv_b2": {
            "params": SV_B2,
            "file": str(out / "sv_b2.npy"),
            "fingerprint": fingerprint(sv),
        },
        "numpy": np.__version__,
    }
    (out / "smc_problems.json").write_text(json.dumps(info, indent=1))
    return info


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/sdeppl_smc_problems")
    print(json.dumps(write_data(ap.parse_args().out), indent=1))
