"""The backend registry seen from sdeppl.fit: options checked against the chosen
backend (with the option probably meant), model requirements, and a model with an
enumerated discrete site under the backend that can enumerate it."""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import sdeppl as sp

Y = jnp.array([0.3, -0.4, 1.1, 0.2, 0.8])


def normal(y=None):
    m = numpyro.sample("m", dist.Normal(0.0, 1.0))
    numpyro.sample("y", dist.Normal(m, 1.0), obs=y)


def test_builtin_backends_are_registered_with_their_options():
    found = sp.backends()
    assert {"blackjax", "nuts", "mclmc", "map"} <= set(found)
    for backend in found.values():
        assert isinstance(backend, sp.Backend)
        for option in backend.options.values():
            assert option.check(option.default) == option.default


def test_misspelled_and_misplaced_options_say_what_was_meant():
    with pytest.raises(
        ValueError, match="unknown keyword 'num_samples'.*Did you mean 'samples'"
    ):
        sp.fit(normal, y=Y, num_samples=10)
    with pytest.raises(
        ValueError, match="unknown keyword 'warmups'.*Did you mean 'warmup'"
    ):
        sp.fit(normal, y=Y, warmups=10)
    with pytest.raises(
        ValueError, match=r"'dense_mass' is an option of method \['blackjax', 'nuts'\]"
    ):
        sp.fit(normal, y=Y, method="map", dense_mass=True)
    with pytest.raises(ValueError, match=r"fit: unknown method 'hmc'; expected one of"):
        sp.fit(normal, y=Y, method="hmc")
    with pytest.raises(ValueError, match="fit: target_accept must be in"):
        sp.fit(normal, y=Y, target_accept=1.5)
    with pytest.raises(ValueError, match=r"samples \(2\) must be >= thinning \(5\)"):
        sp.fit(normal, y=Y, samples=2, thinning=5)


def mixture(y=None):
    weight = numpyro.sample("weight", dist.Beta(2.0, 2.0))
    locs = numpyro.sample("locs", dist.Normal(jnp.array([-2.0, 2.0]), 1.0).to_event(1))
    with numpyro.plate("data", y.shape[0]):
        z = numpyro.sample("z", dist.Bernoulli(weight), infer={"enumerate": "parallel"})
        numpyro.sample("y", dist.Normal(locs[z], 0.5), obs=y)


MIXED = jnp.array([-2.2, -1.8, -2.0, 2.1, 1.9, 2.3, 2.0, -2.1])


def test_enumerated_discrete_site_runs_under_numpyro_nuts():
    fit = sp.fit(
        mixture,
        y=MIXED,
        method="nuts",
        chains=2,
        warmup=300,
        samples=300,
        progress=False,
        posterior_predictive=True,
    )
    post = fit.idata.posterior
    assert post["z"].shape == (2, 300, MIXED.shape[0])
    for chain in range(2):  # each draw's assignment points at the right cluster (the
        # labels themselves may switch between chains: a mixture's symmetry)
        z = post["z"].values[chain].mean(axis=0) > 0.5
        locs = post["locs"].values[chain].mean(axis=0)
        np.testing.assert_array_equal(np.sign(locs[z.astype(int)]), np.sign(MIXED))
    assert "y" in fit.idata.posterior_predictive
    assert "per-time computations" in fit.metadata["skipped"]
    assert set(fit.diagnostics()["check"]) >= {"R-hat", "divergences"}
    with pytest.raises(ValueError, match=r"site\(s\) \['z'\] are discrete.*\['nuts'\]"):
        sp.fit(mixture, y=MIXED, progress=False)
