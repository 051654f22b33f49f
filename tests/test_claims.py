"""The claims report on constructed run records: one clearly supported, one clearly refuted and one inconclusive
case for each kind of claim, the decision rule's parts, and a golden file."""

import json
from pathlib import Path

import numpy as np
import pytest

from recrepro import tables
from recrepro.claims import Claim, Comparison, bootstrap_interval, claims_report, holm, roles_from
from recrepro.metrics import metric_names

GOLDEN = Path(__file__).parent / "golden"
N_USERS = 400
VARIANTS = {
    "base": {"label": "Backbone", "group": "B"},
    "proposed": {"label": "+Proposed", "group": "B", "baseline": "base"},
    "rival": {"label": "+Rival", "group": "B", "baseline": "base"},
    "other": {"label": "Other", "group": "O"},
}
ABLATIONS = {"no-x": {"label": "w/o X", "baseline": "proposed"}}
ROLES = {"proposed": ["proposed"], "same_backbone_rivals": ["rival"], "other_rivals": ["other"]}


def per_user_values(kind: str, seed: int) -> np.ndarray:
    """Per-user metric values of a variant: the backbone's, scaled up or down, or the backbone's plus noise."""
    rng = np.random.default_rng(0)
    base = rng.uniform(0.1, 0.4, N_USERS)
    noise = np.random.default_rng(100 + seed).normal(0, 0.002, N_USERS)
    factor = {"better": 1.25, "worse": 0.8}.get(kind, 1.0)
    values = base * factor + noise
    if kind == "same":  # as good on average, but users disagree both ways
        values = base + np.random.default_rng(7 + seed).normal(0, 0.05, N_USERS)
    if kind == "sparse-gain":  # better only for the sparsest users (the first quarter)
        values = base * np.where(np.arange(N_USERS) < N_USERS // 4, 1.5, 1.0) + noise
    return np.clip(values, 0, 1)


def write_runs(folder: Path, kinds: dict[str, str], seeds=(1, 2, 3)) -> list[Path]:
    paths = []
    users = np.arange(N_USERS)
    for variant, kind in kinds.items():
        for seed in seeds:
            per_user = {m: per_user_values(kind, seed) for m in metric_names()}
            record = {
                "variant": variant,
                "method": variant,
                "dataset": "toy",
                "seed": seed,
                "preset": "faithful",
                "deviations": [],
                "dataset_sha256": "d" * 64,
                "metrics": {"test": {m: float(v.mean()) for m, v in per_user.items()}},
                "side_inputs": {},
                "provenance": {"git": {"commit": "abc123def456789", "dirty": False}, "packages": {"torch": "2.2.1"}},
            }
            path = folder / variant / f"seed{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record))
            np.savez(path.with_suffix(".users.npz"), test_users=users, **{f"test_{m}": v for m, v in per_user.items()})
            paths.append(path)
    return paths


TRAIN_COUNTS = {"toy": np.arange(1, N_USERS + 1)}  # user u has u + 1 training interactions: the first are sparsest


def report(tmp_path, monkeypatch, **kinds):
    monkeypatch.setattr(tables, "git_commit", lambda: {"commit": "0123456789abcdef", "dirty": False})
    runs = tables.Runs.load(write_runs(tmp_path, kinds))
    return claims_report(runs, VARIANTS, ROLES, ABLATIONS, TRAIN_COUNTS)


def verdicts(text: str) -> list[str]:
    return [line.rsplit(" — ", 1)[1] for line in text.splitlines() if line.startswith("## ") and " — " in line]


def test_clear_gains_everywhere_support_every_claim(tmp_path, monkeypatch):
    text = report(tmp_path, monkeypatch, base="base", proposed="better", rival="base", other="base", **{"no-x": "base"})
    improves, beats_rivals, sparse, modules, beats_other = verdicts(text)
    assert (improves, beats_rivals, modules, beats_other) == ("supported",) * 4
    assert sparse == "inconclusive"  # an even gain everywhere is not larger for sparse users
    assert "+25.0%" in text


def test_clear_losses_refute_the_claims(tmp_path, monkeypatch):
    text = report(tmp_path, monkeypatch, base="base", proposed="worse", rival="base", other="base", **{"no-x": "base"})
    improves, beats_rivals, _, modules, beats_other = verdicts(text)
    assert (improves, beats_rivals, beats_other) == ("refuted",) * 3
    assert modules == "refuted"  # removing the module made the model better
    assert "**no, the reverse**" in text


def test_no_systematic_difference_is_inconclusive(tmp_path, monkeypatch):
    text = report(tmp_path, monkeypatch, base="base", proposed="same", rival="same", other="same", **{"no-x": "same"})
    assert set(verdicts(text)) == {"inconclusive"}
    assert "not shown" in text


def test_a_gain_for_sparse_users_only_supports_the_sparsity_claim(tmp_path, monkeypatch):
    text = report(
        tmp_path, monkeypatch, base="base", proposed="sparse-gain", rival="base", other="base", **{"no-x": "base"}
    )
    assert verdicts(text)[2] == "supported"


def test_claims_report_matches_golden_file(tmp_path, monkeypatch):
    text = report(
        tmp_path, monkeypatch, base="base", proposed="sparse-gain", rival="better", other="same", **{"no-x": "worse"}
    )
    path = GOLDEN / "claims.md"
    assert path.exists(), f"golden file {path} is missing: review the report this test makes and commit it there"
    assert text == path.read_text(), f"the claims report differs from {path}"


def test_a_claim_without_its_variants_is_not_tested(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "git_commit", lambda: {"commit": "0123456789abcdef", "dirty": False})
    runs = tables.Runs.load(write_runs(tmp_path, {"base": "base", "proposed": "better"}))
    text = claims_report(runs, VARIANTS, roles_from({"proposed": ["proposed"]}), {}, TRAIN_COUNTS)
    assert verdicts(text) == ["supported", "not tested", "inconclusive", "not tested", "not tested"]
    assert "No run of this study makes this comparison" in text


def test_bootstrap_interval_and_holm_adjustment():
    rng = np.random.default_rng(1)
    worse = rng.uniform(0.1, 0.3, 500)
    low, high = bootstrap_interval(worse * 1.1, worse, 0.95)
    assert low == pytest.approx(0.1, abs=1e-9) and high == pytest.approx(0.1, abs=1e-9)  # an exact 10% everywhere
    low, high = bootstrap_interval(worse + rng.normal(0, 0.05, 500), worse, 0.95)
    assert low < 0 < high
    assert holm([0.01, None, 0.04, 0.03]) == pytest.approx([0.03, None, 0.06, 0.06])


def test_the_verdict_rule():
    def comparison(low, high, primary=True):
        return Comparison("a", "b", "d", "recall@20", (low + high) / 2, low, high, None, None, primary)

    claim = Claim("t", "s", [], [comparison(0.01, 0.1), comparison(0.02, 0.2)])
    assert claim.verdict == "supported"
    claim.comparisons.append(comparison(-0.01, 0.1))
    assert claim.verdict == "inconclusive"
    claim.comparisons.append(comparison(-0.2, -0.1, primary=False))  # another metric does not decide
    assert claim.verdict == "inconclusive"
    claim.comparisons.append(comparison(-0.2, -0.1))
    assert claim.verdict == "refuted"
