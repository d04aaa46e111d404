r"""Simulation-based calibration: rank statistics, a uniformity test and the rank plot.

If data are simulated from the prior predictive and the posterior is computed exactly,
the rank of the true parameter among $L$ posterior draws is uniform on
$\{0, \dots, L\}$ (Talts et al. 2018). Skewed or U-shaped rank histograms reveal biased
or over/under-dispersed posteriors. The driver that simulates and fits lives in
:mod:`sdeppl.infer.sbc` (it needs the samplers); this module holds the statistics.

References
----------
Talts, S., Betancourt, M., Simpson, D., Vehtari, A. and Gelman, A. (2018). Validating
Bayesian inference algorithms with simulation-based calibration. arXiv:1804.06788.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def rank_statistics(
    prior_values: np.ndarray, posterior_draws: np.ndarray
) -> np.ndarray:
    """Ranks of prior values among posterior draws.

    Shapes
    ------
    prior_values: ``(N, *param)``; posterior_draws: ``(N, L, *param)``; returns
    ``(N, *param)`` integers in ``0..L``.
    """
    return np.sum(posterior_draws < prior_values[:, None], axis=1)


def rank_bins(num_draws: int, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bins of whole ranks over ``0..num_draws`` and their probabilities under
    uniformity.

    Bin edges are integers, so a bin holds ``edges[i+1] - edges[i]`` of the
    ``num_draws + 1`` possible ranks and has that fraction as its probability (bins
    that split the ranks unevenly are then still tested correctly). Returns
    ``(edges, probabilities)`` with shapes ``(num_bins + 1,)`` and ``(num_bins,)``.
    """
    num_bins = min(num_bins, num_draws + 1)
    edges = np.unique(np.round(np.linspace(0, num_draws + 1, num_bins + 1)))
    return edges, np.diff(edges) / (num_draws + 1)


def uniformity_pvalue(
    ranks: np.ndarray, num_draws: int, num_bins: int | None = None
) -> float:
    """Chi-square test that ranks are uniform on ``0..num_draws``, over ``num_bins``
    bins of whole ranks (default: about 5 ranks per bin expected, 2 to 20 bins)."""
    ranks = np.asarray(ranks).ravel()
    edges, probabilities = rank_bins(
        num_draws, num_bins or max(2, min(20, ranks.size // 5))
    )
    counts, _ = np.histogram(ranks, bins=edges)
    from scipy import stats  # loaded when used: importing sdeppl stays cheap

    return float(stats.chisquare(counts, ranks.size * probabilities).pvalue)


@dataclass
class SBCResult:
    """Ranks of every parameter and their uniformity p-values.

    Attributes
    ----------
    ranks: ``{name: (N, *param)}`` ranks in ``0..num_draws``.
    num_draws: posterior draws per replicate.
    pvalues: ``{name: p}`` chi-square p-value per parameter (all elements pooled).
    """

    ranks: dict
    num_draws: int
    pvalues: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.pvalues:
            self.pvalues = {
                k: uniformity_pvalue(v, self.num_draws) for k, v in self.ranks.items()
            }

    def passed(self, alpha: float = 0.01) -> bool:
        """True if no parameter's uniformity test rejects at level ``alpha``
        (Bonferroni)."""
        return all(p > alpha / len(self.pvalues) for p in self.pvalues.values())

    def plot(self, num_bins: int = 10):
        """Rank histograms with the 99% band of counts under uniformity; returns the
        figure."""
        import matplotlib.pyplot as plt
        from scipy import stats

        names = list(self.ranks)
        fig, axes = plt.subplots(
            1, len(names), figsize=(3.2 * len(names), 2.6), squeeze=False
        )
        for ax, name in zip(axes[0], names, strict=True):
            r = np.asarray(self.ranks[name]).ravel()
            edges, probabilities = rank_bins(self.num_draws, num_bins)
            counts, _ = np.histogram(r, bins=edges)
            lo = stats.binom.ppf(0.005, r.size, probabilities)
            hi = stats.binom.ppf(0.995, r.size, probabilities)
            ax.fill_between(
                edges,
                np.append(lo, lo[-1]),
                np.append(hi, hi[-1]),
                step="post",
                color="0.4",
                alpha=0.3,
                lw=0,
                zorder=3,
                label="99% band if uniform",
            )
            ax.bar(
                edges[:-1],
                counts,
                width=np.diff(edges),
                align="edge",
                color="#3b6ea8",
                edgecolor="white",
            )
            ax.set_title(f"{name} (p={self.pvalues[name]:.2f})", fontsize=9)
            ax.set_xlabel("rank")
        fig.tight_layout()
        return fig


@dataclass
class VSBCResult:
    """Variational SBC (:func:`sdeppl.vsbc`): per replicate, the guide's probability
    $p = q(\theta < \theta^*)$ of each parameter, and symmetry tests.

    Attributes
    ----------
    probabilities: ``{name: (N, *param)}`` values of $p$ in $[0, 1]$.
    pvalues: ``{name: p}`` two-sample Kolmogorov--Smirnov p-value of $p$ against
        $1 - p$ (all elements pooled): small when the guide is biased on average.
    """

    probabilities: dict
    pvalues: dict = field(default_factory=dict)

    def __post_init__(self):
        from scipy import stats

        if not self.pvalues:
            self.pvalues = {}
            for name, p in self.probabilities.items():
                p = np.asarray(p, float).ravel()
                self.pvalues[name] = float(stats.ks_2samp(p, 1.0 - p).pvalue)

    def passed(self, alpha: float = 0.01) -> bool:
        """True if no parameter's symmetry test rejects at level ``alpha``
        (Bonferroni)."""
        return all(p > alpha / len(self.pvalues) for p in self.pvalues.values())

    def plot(self, num_bins: int = 10):
        """Histograms of $p$ per parameter (symmetric about 1/2 for an unbiased
        guide, flat for an exact one); returns the figure."""
        import matplotlib.pyplot as plt

        names = list(self.probabilities)
        fig, axes = plt.subplots(
            1, len(names), figsize=(3.2 * len(names), 2.6), squeeze=False
        )
        for ax, name in zip(axes[0], names, strict=True):
            p = np.asarray(self.probabilities[name]).ravel()
            ax.hist(
                p,
                bins=np.linspace(0, 1, num_bins + 1),
                color="#3b6ea8",
                edgecolor="white",
            )
            ax.axvline(0.5, color="0.3", ls="--", lw=0.8)
            ax.set_title(f"{name} (symmetry p={self.pvalues[name]:.2f})", fontsize=9)
            ax.set_xlabel("q(θ < θ*)")
        fig.tight_layout()
        return fig
