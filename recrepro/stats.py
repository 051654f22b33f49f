"""Aggregation and significance tests for comparing runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


@dataclass(frozen=True)
class Comparison:
    """An add-on against its baseline on one metric."""

    relative: float  # (mean_addon - mean_base) / mean_base
    p_seeds: float | None  # paired t-test over seeds (None with fewer than 2 seeds)
    p_users: float | None  # Wilcoxon signed-rank over users, on per-user values averaged over seeds

    def marks(self) -> str:
        return ("†" if self.p_seeds is not None and self.p_seeds < ALPHA else "") + (
            "*" if self.p_users is not None and self.p_users < ALPHA else ""
        )


def paired_seeds_p(addon: Sequence[float], base: Sequence[float]) -> float | None:
    """Two-sided paired t-test over seeds (runs paired by seed); None if fewer than two pairs or no variance."""
    differences = np.asarray(addon, float) - np.asarray(base, float)
    if len(differences) < 2:
        return None
    if np.allclose(differences, differences[0], rtol=0, atol=1e-12):  # no variance: t is 0 or infinite
        return 1.0 if abs(differences[0]) <= 1e-12 else 0.0
    return float(stats.ttest_rel(addon, base).pvalue)


def paired_users_p(addon: np.ndarray, base: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank test over users; None if every paired difference is zero."""
    differences = np.asarray(addon, float) - np.asarray(base, float)
    if not np.any(differences != 0):
        return None
    return float(stats.wilcoxon(addon, base, zero_method="wilcox").pvalue)


def compare(
    addon_runs: Sequence[float], base_runs: Sequence[float], addon_users: np.ndarray, base_users: np.ndarray
) -> Comparison:
    """Relative improvement of the mean and both paired tests.

    Args:
        addon_runs, base_runs: the metric of each run, paired by seed (same order).
        addon_users, base_users: per-user values averaged over seeds, paired by user (same order).
    """
    base_mean = float(np.mean(base_runs))
    relative = (float(np.mean(addon_runs)) - base_mean) / base_mean if base_mean else float("nan")
    return Comparison(relative, paired_seeds_p(addon_runs, base_runs), paired_users_p(addon_users, base_users))
