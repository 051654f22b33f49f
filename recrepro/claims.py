"""``results/claims.md``: a verdict on each of the paper's claims, computed from the run records.

Which variants play which part comes from the workflow config's ``claims`` block (the proposed method's
variants, its rivals on the same backbone, its rivals elsewhere); each proposed variant's ``baseline`` is its
backbone, and each ablation's ``baseline`` is the full model.

Decision rule, for one comparison "A is better than B" on one metric: the effect is the relative difference of
the means over seeds, (A - B) / B; its confidence interval comes from a paired bootstrap over test users (the
users are resampled, the per-user values averaged over seeds); within a claim the intervals are widened for the
number of (comparison, primary metric) pairs it makes (Bonferroni). A claim is **supported** when every
comparison's interval lies above 0 on both primary metrics, **refuted** when some comparison's interval lies
below 0 on a primary metric, and **inconclusive** otherwise. The paired tests (Wilcoxon signed-rank over users;
t-test over seeds with at least three seeds) are reported beside, with Holm-adjusted p-values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from recrepro.metrics import HEADLINE, long_metric, metric_names, short_metric
from recrepro.stats import paired_seeds_p, paired_users_p
from recrepro.tables import Runs, footer, markdown, user_groups, variant_name

CONFIDENCE = 0.95
BOOTSTRAP = 2000
BOOTSTRAP_SEED = 2023


@dataclass(frozen=True)
class Comparison:
    """ "``better`` beats ``worse``" on one dataset and metric, with its evidence."""

    better: str
    worse: str
    dataset: str
    metric: str
    effect: float  # relative difference of the means over seeds
    low: float  # confidence interval of the effect (bootstrap over users, Bonferroni-widened)
    high: float
    p_users: float | None
    p_seeds: float | None
    primary: bool

    @property
    def sign(self) -> int:
        """+1 if the interval lies above 0, -1 below 0, 0 if it holds 0."""
        return 1 if self.low > 0 else -1 if self.high < 0 else 0


def bootstrap_interval(
    better: np.ndarray, worse: np.ndarray, level: float, resamples: int = BOOTSTRAP, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile interval of (mean(better) - mean(worse)) / mean(worse) over users resampled with replacement."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(better), size=(resamples, len(better)))
    a, b = better[index].mean(1), worse[index].mean(1)
    effects = (a - b) / np.where(b == 0, np.nan, b)
    tail = (1 - level) / 2
    return float(np.nanquantile(effects, tail)), float(np.nanquantile(effects, 1 - tail))


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values (None stays None)."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (len(present) - rank) * p))
        adjusted[i] = running
    return adjusted


def compare(runs: Runs, better: str, worse: str, dataset: str, metric: str, level: float) -> Comparison:
    """The evidence that ``better`` beats ``worse`` on one dataset and metric."""
    users_a, a = runs.per_user(better, dataset, metric)
    users_b, b = runs.per_user(worse, dataset, metric)
    if not np.array_equal(users_a, users_b):
        raise ValueError(f"{better} and {worse} on {dataset} were evaluated on different users")
    low, high = bootstrap_interval(a, b, level)
    seeds_a, seeds_b = runs.metric(better, dataset, metric), runs.metric(worse, dataset, metric)
    paired = runs.seeds(better, dataset) == runs.seeds(worse, dataset) and len(seeds_a) >= 3
    return Comparison(
        better=better,
        worse=worse,
        dataset=dataset,
        metric=metric,
        effect=float((np.mean(seeds_a) - np.mean(seeds_b)) / np.mean(seeds_b)),
        low=low,
        high=high,
        p_users=paired_users_p(a, b),
        p_seeds=paired_seeds_p(seeds_a, seeds_b) if paired else None,
        primary=metric in HEADLINE,
    )


@dataclass
class Claim:
    title: str
    statement: str
    pairs: list[tuple[str, str]]  # (claimed better, claimed worse)
    comparisons: list[Comparison]
    note: str = ""

    @property
    def verdict(self) -> str:
        primary = [c for c in self.comparisons if c.primary]
        if not primary:
            return "not tested"
        if any(c.sign < 0 for c in primary):
            return "refuted"
        if all(c.sign > 0 for c in primary):
            return "supported"
        return "inconclusive"


def _level(n_tests: int) -> float:
    return 1 - (1 - CONFIDENCE) / max(n_tests, 1)


def _claim(runs: Runs, title: str, statement: str, pairs: list[tuple[str, str]], note: str = "") -> Claim:
    present = [(a, b, d) for a, b in pairs for d in runs.datasets if runs.get(a, d) and runs.get(b, d)]
    level = _level(len(present) * len(HEADLINE))
    comparisons = [compare(runs, a, b, d, m, level) for a, b, d in present for m in metric_names()]
    return Claim(title, statement, pairs, comparisons, note)


def _sparsity_claim(
    runs: Runs, proposed: list[tuple[str, str]], train_counts: dict[str, np.ndarray], title: str, statement: str
) -> Claim:
    """Improvement over the backbone among the sparsest quarter of users vs among the most active quarter."""
    comparisons = []
    present = [(a, b, d) for a, b in proposed for d in runs.datasets if runs.get(a, d) and runs.get(b, d)]
    level = _level(len(present) * len(HEADLINE))
    for a, b, dataset in present:
        users, _ = runs.per_user(a, dataset, HEADLINE[0])
        groups = [g["mask"] for g in user_groups(train_counts[dataset], users, None).values()]
        sparse, dense = groups[0], groups[-1]
        for metric in HEADLINE:
            _, va = runs.per_user(a, dataset, metric)
            _, vb = runs.per_user(b, dataset, metric)
            gain = lambda x, y: (x.mean() - y.mean()) / y.mean()  # noqa: E731
            effect = float(gain(va[sparse], vb[sparse]) - gain(va[dense], vb[dense]))
            rng = np.random.default_rng(BOOTSTRAP_SEED)
            s_idx = rng.integers(0, sparse.sum(), size=(BOOTSTRAP, sparse.sum()))
            d_idx = rng.integers(0, dense.sum(), size=(BOOTSTRAP, dense.sum()))
            sa, sb, da, db = va[sparse][s_idx], vb[sparse][s_idx], va[dense][d_idx], vb[dense][d_idx]
            diffs = (sa.mean(1) - sb.mean(1)) / sb.mean(1) - (da.mean(1) - db.mean(1)) / db.mean(1)
            tail = (1 - level) / 2
            low, high = (float(q) for q in np.nanquantile(diffs, [tail, 1 - tail]))
            u = scipy_stats.mannwhitneyu(va[sparse] - vb[sparse], va[dense] - vb[dense], alternative="two-sided")
            comparisons.append(
                Comparison(a, b, dataset, metric, effect, low, high, float(u.pvalue), None, primary=True)
            )
    note = (
        "Effect: the relative improvement over the backbone among the sparsest quarter of test users (by training "
        "interactions) minus that among the most active quarter; interval by resampling users within each group; "
        "p: Mann-Whitney U test between the two groups' per-user improvements."
    )
    return Claim(title, statement, proposed, comparisons, note)


def claims_report(
    runs: Runs,
    variants: dict[str, dict],
    roles: dict[str, list[str]],
    ablations: dict[str, dict],
    train_counts: dict[str, np.ndarray],
    tuning: dict | None = None,
) -> str:
    """The markdown verdicts on the paper's claims."""
    proposed = [(v, variants[v]["baseline"]) for v in roles.get("proposed", []) if v in variants]
    backbone_rivals = [
        (p, r)
        for p, _ in proposed
        for r in roles.get("same_backbone_rivals", [])
        if r in variants and variants[r].get("group") == variants[p].get("group")
    ]
    other_rivals = [(p, r) for p, _ in proposed for r in roles.get("other_rivals", []) if r in variants]
    removed = [(spec["baseline"], name) for name, spec in ablations.items() if spec.get("baseline")]
    claims = [
        _claim(
            runs,
            "IRLLRec improves its backbone",
            "IRLLRec improves its backbone (LightGCN, DCCF) on every dataset and metric.",
            proposed,
        ),
        _claim(
            runs,
            "IRLLRec beats RLMRec",
            "IRLLRec beats RLMRec-Con and RLMRec-Gen on the same backbone.",
            backbone_rivals,
        ),
        _sparsity_claim(
            runs,
            proposed,
            train_counts,
            "Gains are largest for sparse users",
            "IRLLRec's gains over its backbone are largest for sparse users.",
        ),
        _claim(runs, "Each module matters", "Removing IA, TA or ITM lowers Recall@20 and NDCG@20.", removed),
        _claim(runs, "IRLLRec beats KGIN", "IRLLRec beats KGIN.", other_rivals),
    ]
    names = {**variants, **ablations}
    summary = "; ".join(f"{i}. {c.title}: **{c.verdict}**" for i, c in enumerate(claims, 1))
    text = [
        "# Does IRLLRec do what the paper claims?",
        "",
        f"Verdicts from the run records of this study: {summary}.",
        "",
        "**Decision rule.** For each comparison the effect is the relative difference of the means over seeds; its "
        f"{CONFIDENCE:.0%} confidence interval comes from a paired bootstrap over test users ({BOOTSTRAP} "
        "resamples), widened for the number of comparisons on the primary metrics "
        f"({' and '.join(map(long_metric, HEADLINE))}) within the claim (Bonferroni). A claim is *supported* when "
        "every interval lies above 0 on both primary metrics, *refuted* when some interval lies below 0 on a "
        "primary metric, and *inconclusive* otherwise. p-values: Wilcoxon signed-rank over users and (with at "
        "least three seeds) a paired t-test over seeds, Holm-adjusted within each claim; other metrics are shown "
        "but do not decide.",
        "",
    ]
    for number, claim in enumerate(claims, 1):
        text += [f"## {number}. {claim.statement} — {claim.verdict}", ""]
        if not claim.comparisons:
            text += ["No run of this study makes this comparison (its variants are not configured or not run).", ""]
            continue
        p_users = holm([c.p_users for c in claim.comparisons])
        p_seeds = holm([c.p_seeds for c in claim.comparisons])
        rows = []
        for c, pu, ps in zip(claim.comparisons, p_users, p_seeds):
            rows.append(
                [
                    f"{variant_name(c.better, names)} vs {variant_name(c.worse, names)}",
                    c.dataset,
                    short_metric(c.metric) + ("" if c.primary else " (info)"),
                    f"{c.effect:+.1%}",
                    f"[{c.low:+.1%}, {c.high:+.1%}]",
                    "–" if pu is None else f"{pu:.3g}",
                    "–" if ps is None else f"{ps:.3g}",
                    {1: "yes", -1: "**no, the reverse**", 0: "not shown"}[c.sign] if c.primary else "",
                ]
            )
        headers = ["Comparison", "Dataset", "Metric", "Effect", "Interval", "p (users)", "p (seeds)", "Claimed"]
        text += [markdown(rows, headers), ""]
        if claim.note:
            text += [claim.note, ""]
    records = [r for key, group in runs.groups.items() if key[0] in names for r in group]
    text += ["## Conditions", "", footer(records, names, tuning), ""]
    return "\n".join(text)


def roles_from(config: dict[str, Any]) -> dict[str, list[str]]:
    """The ``claims`` block of the workflow config, with empty roles where it names none."""
    block = config or {}
    return {key: list(block.get(key, [])) for key in ("proposed", "same_backbone_rivals", "other_rivals")}
