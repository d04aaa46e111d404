"""The main job's model: the exact CIR likelihood on the T-bill data agrees with an
independent maximum-likelihood fit by SciPy, and removes the Euler scheme's bias."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

import sdeppl as sp
from sdeppl.recipes import load_model_module

from .cases import scipy_cir_log_transition

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def _scipy_mle(ts, r):
    """Exact CIR maximum likelihood by Nelder–Mead on log parameters (SciPy only)."""
    h, x0, x1 = np.diff(ts), r[:-1], r[1:]

    def negative_log_likelihood(log_params):
        return -np.sum(scipy_cir_log_transition(*np.exp(log_params), h, x0, x1))

    fits = [
        optimize.minimize(
            negative_log_likelihood,
            np.log(start),
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 20000},
        )
        for start in ((0.05, 5.0, 0.7), (0.2, 4.0, 0.5), (0.01, 8.0, 0.6))
    ]
    best = min(fits, key=lambda f: f.fun)
    return dict(zip(("kappa", "theta", "sigma"), np.exp(best.x), strict=True))


@pytest.fixture(scope="module")
def tbill():
    cir = load_model_module("cir", ROOT / "models")
    return cir, cir.data()


@pytest.mark.slow
def test_posterior_medians_sit_at_the_exact_mle(tbill):
    cir, data = tbill
    mle = _scipy_mle(np.asarray(data["ts"]), np.asarray(data["r"]))
    fit = sp.fit(
        cir.model,
        model_kwargs={**data, "method": "exact"},
        chains=2,
        warmup=500,
        samples=500,
        seed=1,
        progress=False,
        log_likelihood=False,
    )
    for name, value in mle.items():
        draws = fit.idata.posterior[name].values.ravel()
        assert abs(np.median(draws) - value) < draws.std(), (name, value)


def test_the_gallery_likelihood_is_the_scipy_one_on_the_data(tbill):
    """The rates run from 0.12% to 15.3% (the Bessel function's arguments from
    about 10 to 10^3): the exact path density on them equals SciPy's to 1e-10."""
    cir, data = tbill
    ts, r = np.asarray(data["ts"]), np.asarray(data["r"])
    mle = _scipy_mle(ts, r)
    path = sp.Path(sp.CIR(*mle.values()), ts, x0=float(r[0]), method="exact")
    np.testing.assert_allclose(
        float(path.log_prob(jnp.asarray(r))),
        np.sum(scipy_cir_log_transition(*mle.values(), np.diff(ts), r[:-1], r[1:])),
        rtol=1e-10,
    )
