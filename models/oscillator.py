r"""Damped stochastic oscillator seen through its position only, at irregular times.

$dX_t = A X_t\,dt + L\,dW_t$ with $X = (\text{position}, \text{velocity})$,
$A = \begin{pmatrix} 0 & 1 \\ -k & -c \end{pmatrix}$, $L = (0, q)^\top$ (noise on the
velocity only), observed as $y_j = X^{(1)}_{t_j} + \varepsilon_j$,
$\varepsilon_j \sim N(0, r^2)$. Simulated at 200 irregular times (gaps uniform on
$[0.05, 0.45]$) from the model itself at ``TRUE_PARAMS``, with a run of 20 missing
points and three short ones (26 NaN in all). The velocity is never observed; the Kalman
filter (``method="kalman"``, exact matrix-exponential transitions) integrates it out.
Priors: $k \sim \text{HalfNormal}(5)$, $c \sim \text{HalfNormal}(2)$,
$q \sim \text{HalfNormal}(2)$, $r \sim \text{HalfNormal}(1)$, $X_0 \sim N(0, I_2)$.
"""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

import sdeppl as sp

DESCRIPTION = "Damped stochastic oscillator, noisy positions at irregular times"
TRUE_PARAMS = {"k": 4.0, "c": 0.5, "q": 1.0, "r": 0.2}
MISSING = [*range(80, 100), 30, 31, 150, 151, 152, 190]  # indices set to NaN


def oscillator(k, c, q, r, ts, method="kalman"):
    """The model's :class:`~sdeppl.StateSpace` at given parameters."""
    zero = jnp.zeros_like(k)
    A = jnp.stack([jnp.stack([zero, jnp.ones_like(k)]), jnp.stack([-k, -c])])
    L = jnp.stack([zero, q])[:, None]
    return sp.StateSpace(
        sp.LinearSDE(A=A, L=L),
        ts,
        x0=dist.Normal(jnp.zeros(2), 1.0).to_event(1),
        obs=sp.LinearGaussian(H=jnp.array([1.0, 0.0]), R=r**2),
        method=method,
    )


def model(ts, y=None, method="kalman"):
    k = numpyro.sample("k", dist.HalfNormal(5.0))
    c = numpyro.sample("c", dist.HalfNormal(2.0))
    q = numpyro.sample("q", dist.HalfNormal(2.0))
    r = numpyro.sample("r", dist.HalfNormal(1.0))
    return numpyro.sample("y", oscillator(k, c, q, r, ts, method), obs=y)


def data(num_points=200, seed=0):
    """Noisy positions ``y`` at irregular times ``ts``, simulated at ``TRUE_PARAMS``
    (``StateSpace.sample``), with the points ``MISSING`` set to NaN."""
    key_ts, key_y = jax.random.split(jax.random.key(seed))
    gaps = jax.random.uniform(key_ts, (num_points - 1,), minval=0.05, maxval=0.45)
    ts = jnp.concatenate([jnp.zeros(1), jnp.cumsum(gaps)])
    true = {k: jnp.asarray(v) for k, v in TRUE_PARAMS.items()}
    y = oscillator(**true, ts=ts).sample(key_y)
    missing = jnp.array([i for i in MISSING if i < num_points], dtype=int)
    return {"ts": ts, "y": y.at[missing].set(jnp.nan)}
