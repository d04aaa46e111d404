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
from scipy import stats


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


def uniformity_pvalue(
    ranks: np.ndarray, num_draws: int, num_bins: int | None = None
) -> float:
    """Chi-square test of uniform ranks over ``num_bins`` equal bins of
    ``0..num_draws``."""
    ranks = np.asarray(ranks).ravel()
    num_bins = num_bins or max(2, min(20, ranks.size // 5))
    edges = np.linspace(0, num_draws + 1, num_bins + 1)
    counts, _ = np.histogram(ranks, bins=edges)
    return float(stats.chisquare(counts).pvalue)


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

        names = list(self.ranks)
        fig, axes = plt.subplots(
            1, len(names), figsize=(3.2 * len(names), 2.6), squeeze=False
        )
        for ax, name in zip(axes[0], names, strict=True):
            r = np.asarray(self.ranks[name]).ravel()
            edges = np.linspace(0, self.num_draws + 1, num_bins + 1)
            counts, _ = np.histogram(r, bins=edges)
            lo, hi = stats.binom.ppf([0.005, 0.995], r.size, 1.0 / num_bins)
            ax.axhspan(lo, hi, color="0.85", lw=0)
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
