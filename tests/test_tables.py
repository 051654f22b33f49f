"""Statistics on constructed inputs, and the table generators on fixture results against golden files."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from recrepro import regression, tables
from recrepro.stats import compare, mean_std, paired_seeds_p, paired_users_p

GOLDEN = Path(__file__).parent / "golden"
METRICS = tables.METRIC_COLUMNS


def test_mean_and_sample_std():
    assert mean_std([1.0, 2.0, 3.0, 6.0]) == pytest.approx((3.0, math.sqrt(14 / 3)))
    assert mean_std([0.25]) == (0.25, 0.0)


def test_paired_t_test_over_seeds():
    addon, base = [0.30, 0.32, 0.31], [0.28, 0.29, 0.30]
    d = np.subtract(addon, base)
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    assert paired_seeds_p(addon, base) == pytest.approx(2 * scipy_stats.t.sf(abs(t), df=len(d) - 1))
    assert paired_seeds_p([0.3], [0.2]) is None  # one seed: no test
    assert paired_seeds_p([0.3, 0.4], [0.2, 0.3]) == 0.0  # identical improvement every seed
    assert paired_seeds_p([0.3, 0.4], [0.3, 0.4]) == 1.0


def test_wilcoxon_over_users():
    rng = np.random.default_rng(0)
    base = rng.random(200)
    better = base + 0.05 + rng.normal(0, 0.01, 200)
    assert paired_users_p(better, base) < 1e-10
    assert paired_users_p(base, base) is None
    noise = base + rng.normal(0, 0.01, 200)
    assert paired_users_p(noise, base) > 0.01


def test_comparison_marks():
    c = compare([0.33, 0.34, 0.35], [0.30, 0.30, 0.31], np.linspace(0.1, 0.5, 50) + 0.05, np.linspace(0.1, 0.5, 50))
    assert c.relative == pytest.approx((0.34 - 0.91 / 3) / (0.91 / 3))
    assert c.marks() == "†*"


def make_runs(folder: Path) -> list[Path]:
    """Deterministic fixture results: 3 variants x 2 datasets x 2 seeds, with per-user metrics."""
    rng = np.random.default_rng(7)
    paths = []
    for dataset, n_users in (("alpha", 120), ("beta", 80)):
        users = np.arange(n_users)
        base_users = {m: rng.random(n_users) * 0.4 for m in METRICS}
        for variant, lift in (("base", 0.0), ("addon", 0.03), ("other", -0.01)):
            for seed in (1, 2):
                per_user = {m: np.clip(v + lift + rng.normal(0, 0.01, n_users), 0, 1) for m, v in base_users.items()}
                record = {
                    "variant": variant,
                    "method": variant,
                    "dataset": dataset,
                    "seed": seed,
                    "preset": "faithful",
                    "deviations": ["model.x=1 (reference 2)"] if variant == "addon" else [],
                    "dataset_sha256": f"{dataset:0<64}",
                    "metrics": {"test": {m: float(v.mean()) for m, v in per_user.items()}},
                    "side_inputs": {"text": "text: test-llm texts embedded with test-emb (8-d)"}
                    if variant == "addon"
                    else {},
                    "seconds_per_epoch": 0.5 + seed / 10,
                    "seconds_per_validation": 0.1,
                    "best_epoch": 9 * seed,
                    "epochs_run": 30,
                    "train_seconds": 15.0,
                    "peak_rss_mb": 700.0,
                    "n_parameters": 1234,
                    "device": "cpu",
                    "provenance": {
                        "git": {"commit": "abc123def456789", "dirty": False},
                        "packages": {"torch": "2.2.1", "dgl": "2.1.0"},
                    },
                }
                path = folder / dataset / variant / f"seed{seed}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(record))
                np.savez(
                    path.with_suffix(".users.npz"), test_users=users, **{f"test_{m}": v for m, v in per_user.items()}
                )
                paths.append(path)
    return paths


VARIANTS = {
    "base": {"label": "Base", "group": "G"},
    "addon": {"label": "+Addon", "group": "G", "baseline": "base"},
    "other": {"label": "Other", "group": "H"},
}
TUNING = {"trials": 3, "workers": 2, "max_epochs": 20, "timeout_s": None}


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "git_commit", lambda: {"commit": "0123456789abcdef", "dirty": False})
    return tables.Runs.load(make_runs(tmp_path))


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    assert path.exists(), f"golden file {path} is missing: review the table this test makes and commit it there"
    assert text == path.read_text(), f"{name} differs from its golden file {path}"


def test_table2_matches_golden_file(runs):
    check_golden("table2.md", tables.table2(runs, VARIANTS, TUNING, see_also=["table3.md"]))


def test_efficiency_and_sparsity_match_golden_files(runs, tmp_path):
    counts = {"alpha": np.arange(120) % 40 + 1, "beta": np.arange(80) % 25 + 1}
    check_golden("efficiency.md", tables.efficiency_table(runs, VARIANTS))
    text = tables.sparsity(runs, VARIANTS, counts, {"alpha": (5, 20), "beta": None}, plot_path=tmp_path / "s.png")
    check_golden("sparsity.md", text)
    assert (tmp_path / "s.png").stat().st_size > 10_000


def test_table2_marks_best_and_second_and_significance(runs):
    text = tables.table2(runs, VARIANTS, TUNING)
    addon_row = next(line for line in text.splitlines() if "+Addon" in line and "**" in line)
    assert addon_row.count("**") == 2 * len(METRICS) * 2  # best in every column
    assert "<u>" in next(line for line in text.splitlines() if "| Base" in line)
    improvement = next(line for line in text.splitlines() if line.startswith("| G +Addon"))
    # the add-on is better for every seed and most users: both tests are significant in every column
    assert improvement.count("†*") == len(METRICS) * 2
    assert "model.x=1 (reference 2)" in text and "3 trials per method" in text


def test_regression_check_catches_drift(runs, tmp_path):
    expected = tmp_path / "expected.json"
    regression.write_expected(expected, runs.records, tolerance=0.002)
    ok, report = regression.check(runs.records, expected)
    assert ok, report
    perturbed = json.loads(json.dumps(runs.records))
    perturbed[0]["metrics"]["test"]["recall@20"] += 0.01  # a method changed on purpose
    ok, report = regression.check(perturbed, expected)
    assert not ok
    assert "DRIFT" in report and "R@20" in report and "+0.01000" in report and "recrepro regression update" in report
    ok, report = regression.check(perturbed[1:], expected)
    assert not ok and "MISSING" in report


def test_regression_commands_on_run_files(tmp_path, monkeypatch):
    from recrepro.cli import main

    monkeypatch.setattr(tables, "git_commit", lambda: {"commit": "0123456789abcdef", "dirty": False})
    paths = [str(p) for p in make_runs(tmp_path / "runs")]
    expected = tmp_path / "expected.json"
    assert main(["regression", "update", *paths, "--expected", str(expected)]) == 0
    assert main(["regression", "check", *paths, "--expected", str(expected), "--out", str(tmp_path / "r.md")]) == 0
    assert "within" in (tmp_path / "r.md").read_text()


def test_regression_check_without_expected_values_is_a_clear_error(tmp_path, caplog):
    from recrepro.cli import main

    paths = [str(p) for p in make_runs(tmp_path / "runs")]
    missing, report = tmp_path / "expected.json", tmp_path / "r.md"
    assert main(["regression", "check", *paths, "--expected", str(missing), "--out", str(report)]) == 1
    assert str(missing) in caplog.text and not report.exists()


def test_regression_report_names_the_expected_file_relative_to_the_repository(runs):
    """Reports land under results/: they name the repository's expected file by its repository path."""
    from recrepro.paths import REPO_ROOT

    expected = REPO_ROOT / "tests" / "regression" / "expected.json"
    _, report = regression.check(runs.records, expected)
    assert "tests/regression/expected.json" in report and str(REPO_ROOT) not in report
