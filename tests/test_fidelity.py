"""The fidelity table (`recrepro fidelity`): runs are matched to the official code's numbers only on identical
method, preset, inputs and hyperparameters; differences, verdicts, speed ratios and provenance are reported."""

import json
from pathlib import Path

import pytest
import yaml

from recrepro import fidelity
from recrepro.cli import main

GOLDEN = Path(__file__).parent / "golden"
METRICS = ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20")


def record(method="lightgcn", dataset="toy", preset="faithful", seed=2023, recall=0.30, ndcg=0.25, **changes):
    values = {m: (recall if m.startswith("recall") else ndcg) * int(m.split("@")[1]) / 20 for m in METRICS}
    base = {
        "method": method,
        "dataset": dataset,
        "preset": preset,
        "seed": seed,
        "config": {"model": {"layers": 2, "reg_weight": 1e-6}, "train": {"lr": 0.001}},
        "inputs": {"dataset_sha256": "d" * 64, "text": {"kind": "llm", "sha256": "t" * 64}},
        "metrics": {"val": values, "test": values},
        "best_epoch": 42,
        "provenance": {"git": {"commit": "0123456789abcdef"}},
    }
    for key, value in changes.items():
        base[key] = value
    return base


def entry(**changes):
    base = {
        "method": "lightgcn",
        "dataset": "toy",
        "preset": "faithful",
        "code": "ref",
        "text": "LLM stage",
        "part": "test",
        "inputs": {"dataset_sha256": "d" * 64, "text": {"sha256": "t" * 64}},
        "model": {"layers": 2, "reg_weight": 1.0e-6},
        "train": {"lr": 0.001},
        "best_epoch": 40,
        "metrics": {m: v for m, v in record()["metrics"]["test"].items()},
        "source": "measured with the official code",
        "timing": {
            "reference_s_per_epoch": 2.0,
            "ours_s_per_epoch": 0.5,
            "reference_peak_rss_mb": 900,
            "ours_peak_rss_mb": 600,
            "how": "5 epochs each, back to back",
        },
    }
    base.update(changes)
    return base


REFERENCE = {"code": {"ref": {"repository": "example.org/ref", "commit": "abc1234", "patches": ["paths"]}}}


def test_only_runs_on_identical_inputs_and_hyperparameters_are_compared():
    e = entry()
    assert fidelity.matches(record(), e)
    assert not fidelity.matches(record(preset="paper"), e)
    assert not fidelity.matches(record(config={"model": {"layers": 3, "reg_weight": 1e-6}, "train": {"lr": 1e-3}}), e)
    assert not fidelity.matches(record(inputs={"dataset_sha256": "x" * 64, "text": {"sha256": "t" * 64}}), e)
    assert not fidelity.matches(record(inputs={"dataset_sha256": "d" * 64, "text": {"sha256": "u" * 64}}), e)
    assert not fidelity.matches(record(inputs={"dataset_sha256": "d" * 64}), e)  # a tuned or text-less run
    # an entry that names only the kind of text matches any run on that kind
    assert fidelity.matches(record(), entry(inputs={"dataset_sha256": "d" * 64, "text": {"kind": "llm"}}))


def test_a_run_cut_by_its_epoch_budget_matches_only_an_entry_with_that_budget():
    cut = record(config={"model": {"layers": 2, "reg_weight": 1e-6}, "train": {"lr": 0.001, "max_epochs": 10}})
    cut["stopped_early"] = False
    assert "its whole budget of 10 epochs" in fidelity.mismatch(cut, entry())
    budget = entry(train={"lr": 0.001, "max_epochs": 10})
    assert fidelity.matches(cut, budget)
    assert not fidelity.matches({**cut, "config": {**cut["config"], "train": {"lr": 0.001, "max_epochs": 20}}}, budget)
    assert fidelity.matches({**cut, "stopped_early": True}, entry())  # stopped before its budget: a full run
    text, ok = fidelity.report([cut], {**REFERENCE, "comparisons": [entry(), budget]})
    assert ok and "| lightgcn (first 10 epochs) [2] |" in text and "| lightgcn [1] " in text
    assert "| not run " in text  # the full-run entry: the cut run is not compared with it


def test_verdicts_differences_and_speed_ratio():
    reference = {**REFERENCE, "comparisons": [entry(), entry(method="dccf"), entry(dataset="other")]}
    far = record(method="dccf", recall=0.40)  # +33% on R@20
    text, ok = fidelity.report([record(recall=0.303), far], reference)
    assert not ok
    rows = [line for line in text.splitlines() if line.startswith("| ") and "[" in line.split("|")[1]]
    assert "+1.0%" in rows[0] and "| yes " in rows[0] and "4.0x" in rows[0] and "900 / 600" in rows[0]
    assert "+33.3%" in rows[1] and "**no**" in rows[1]
    assert "not run" in rows[2]
    assert "example.org/ref @ abc1234. Patches to run it here: paths." in text
    assert "seed 2023 (0123456789)" in text


def test_a_speed_only_entry_gives_its_ratio_and_compares_no_numbers():
    speed_only = {k: v for k, v in entry(dataset="other").items() if k != "metrics"}
    text, ok = fidelity.report([record()], {**REFERENCE, "comparisons": [entry(), speed_only]})
    assert ok
    row = next(line for line in text.splitlines() if line.startswith("| lightgcn [2]"))
    assert "speed only" in row and "4.0x" in row and "900 / 600" in row and "%" not in row and "| – / 0 " in row
    assert "| [2]" not in text.split("## All metrics")[1].split("\n## ")[0]  # no numbers to list


def test_an_explained_miss_does_not_fail_the_check():
    reference = {**REFERENCE, "comparisons": [entry(explained="random streams; fixed-batch equal to 1e-7")]}
    text, ok = fidelity.report([record(recall=0.40)], reference)
    assert ok and "no, explained [1]" in text and "Explained: random streams" in text


def test_several_seeds_are_averaged_and_listed_per_seed():
    by_seed = {s: {m: v * f for m, v in record()["metrics"]["test"].items()} for s, f in ((1, 0.9), (2, 1.1))}
    means = {m: (by_seed[1][m] + by_seed[2][m]) / 2 for m in METRICS}
    reference = {**REFERENCE, "comparisons": [entry(seeds=[1, 2], metrics=means, metrics_by_seed=by_seed)]}
    text, ok = fidelity.report([record(seed=7, recall=0.28), record(seed=8, recall=0.32)], reference)
    row = next(line for line in text.splitlines() if line.startswith("| lightgcn [1]"))
    assert ok and "| 2 / 2 " in row and "+0.0%" in row
    assert "R@20 per seed, reference 0.2700, 0.3300; ours 0.2800, 0.3200" in text


def test_runs_without_a_reference_number_are_listed_with_the_reason():
    pending = [{"method": "kgin", "dataset": "toy", "reason": "the reference run has not finished"}]
    reference = {**REFERENCE, "comparisons": [entry()], "pending": pending}
    text, ok = fidelity.report([record(), record(method="kgin"), record(method="dccf")], reference)
    section = text.split("## Our runs without a reference number")[1]
    assert ok and "kgin on toy, seed 2023: val R@20 0.3000" in section
    assert "Not compared: the reference run has not finished." in section
    assert "dccf on toy" in section and "no reference entry for this method, dataset and preset" in section
    assert "lightgcn on toy" not in section
    assert "## Our runs without" not in fidelity.report([record()], reference)[0]


def test_an_unmatched_run_says_how_it_differs_from_the_reference_run():
    # e.g. text embeddings recomputed on another CPU: same texts, other last bits, so another checksum
    other_text = record(inputs={"dataset_sha256": "d" * 64, "text": {"kind": "llm", "sha256": "e" * 64}})
    other_lr = record(config={"model": {"layers": 2, "reg_weight": 1e-6}, "train": {"lr": 0.01}})
    reference = {**REFERENCE, "comparisons": [entry()]}
    section = fidelity.report([other_text, other_lr], reference)[0].split("## Our runs without a reference number")[1]
    assert f"inputs.text.sha256 is {'e' * 12}… here, {'t' * 12}… in the reference run" in section
    assert "train.lr is 0.01 here, 0.001 in the reference run" in section
    assert fidelity.mismatch(record(), entry()) is None


def history(epochs, recall, ndcg):
    """A run record's validation history with the given headline values."""
    return [{"epoch": e, "val": {"recall@20": r, "ndcg@20": n}} for e, r, n in zip(epochs, recall, ndcg)]


CURVE = {"epoch": [0, 3, 6, 9], "recall@20": [0.10, 0.20, 0.28, 0.30], "ndcg@20": [0.08, 0.16, 0.22, 0.24]}


def test_validation_curves_are_compared_at_the_epochs_both_validated():
    # ours validated at 0, 3, 6 (stopped earlier) and at 1, which the reference did not
    ours = record(history=history([0, 1, 3, 6], [0.13, 0.5, 0.19, 0.285], [0.08, 0.5, 0.17, 0.22]), epochs_run=7)
    reference = {**REFERENCE, "comparisons": [entry(validation_curves={2023: CURVE}, epochs_run=10)]}
    [gap] = fidelity.curve_gaps(fidelity.rows([ours], reference)[0])
    assert gap.seed == 2023 and gap.epochs == [0, 3, 6]
    assert gap.largest == pytest.approx({"recall@20": 0.03, "ndcg@20": 0.01})
    assert gap.last == pytest.approx({"recall@20": 0.005, "ndcg@20": 0.0})
    section = fidelity.report([ours], reference)[0].split("## Validation curves")[1]
    row = next(line for line in section.splitlines() if line.startswith("| [1]"))
    assert "0–6" in row and "0.0300" in row and "0.0100" in row and "+0.0050" in row and "+0.0000" in row
    assert "10 / 7" in row


def test_only_seeds_with_an_official_curve_are_compared_and_rows_without_one_are_named():
    curves = {2024: CURVE}
    seeds = [record(seed=s, history=history([0, 3], [0.1, 0.2], [0.08, 0.16])) for s in (2023, 2024)]
    reference = {
        **REFERENCE,
        "comparisons": [entry(seeds=[2023, 2024], validation_curves=curves), entry(method="dccf")],
    }
    plain = record(method="dccf", history=history([0], [0.1], [0.1]))
    gaps = fidelity.curve_gaps(fidelity.rows([*seeds, plain], reference)[0])
    assert [g.seed for g in gaps] == [2024] and gaps[0].largest == pytest.approx({"recall@20": 0, "ndcg@20": 0})
    text = fidelity.report([*seeds, plain], reference)[0]
    assert "no recorded official curve: [2]." in text
    assert "## Validation curves" not in fidelity.report([plain], reference)[0]


def test_fidelity_command_plots_the_curves_and_links_the_plot(tmp_path):
    run = tmp_path / "run.json"
    run.write_text(json.dumps(record(history=history([0, 3, 6], [0.1, 0.2, 0.3], [0.08, 0.16, 0.22]))))
    reference = tmp_path / "reference.yaml"
    reference.write_text(yaml.safe_dump({**REFERENCE, "comparisons": [entry(validation_curves={2023: CURVE})]}))
    out, plot = tmp_path / "tables" / "fidelity.md", tmp_path / "plots" / "curves.png"
    assert main(["fidelity", str(run), "--reference", str(reference), "--plot", str(plot), "--out", str(out)]) == 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "](../plots/curves.png)" in out.read_text()
    # nothing to plot: a clear error, and no table written in its place
    reference.write_text(yaml.safe_dump({**REFERENCE, "comparisons": [entry()]}))
    out.unlink()
    with pytest.raises(ValueError, match="no row has both an official validation curve and a run of ours"):
        fidelity.plot_curves([record()], fidelity.load_reference(reference), plot)
    assert main(["fidelity", str(run), "--reference", str(reference), "--plot", str(plot), "--out", str(out)]) == 1
    assert not out.exists()


def test_fidelity_table_matches_golden_file():
    curve = {2023: CURVE}
    reference = {
        **REFERENCE,
        "comparisons": [entry(validation_curves=curve), entry(method="dccf", part="val", timing=None)],
    }
    ours = record(recall=0.31, ndcg=0.24, history=history([0, 3], [0.11, 0.2], [0.08, 0.15]), epochs_run=4)
    text, _ = fidelity.report([ours, record(method="dccf", seed=1)], reference, plot_name="fidelity-curves.png")
    path = GOLDEN / "fidelity.md"
    assert text == path.read_text(), f"the fidelity table differs from {path}"


def test_fidelity_command_writes_the_table_and_checks(tmp_path):
    runs = []
    for name, rec in (("a", record()), ("b", record(method="dccf", recall=0.5))):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(rec))
        runs.append(str(path))
    reference = tmp_path / "reference.yaml"
    reference.write_text(yaml.safe_dump({**REFERENCE, "comparisons": [entry(), entry(method="dccf")]}))
    out = tmp_path / "fidelity.md"
    assert main(["fidelity", *runs, "--reference", str(reference), "--out", str(out)]) == 0
    assert "| lightgcn [1]" in out.read_text()
    assert main(["fidelity", *runs, "--reference", str(reference), "--out", str(out), "--check"]) == 1


def test_a_malformed_reference_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "reference.yaml"
    bad.write_text("lightgcn: {amazon: {test: {recall@20: 0.1}}}\n")
    with pytest.raises(ValueError, match="comparisons"):
        fidelity.load_reference(bad)


def test_a_reference_entry_without_metrics_or_timing_is_a_clear_error(tmp_path):
    bad = tmp_path / "reference.yaml"
    empty = {k: v for k, v in entry().items() if k not in ("metrics", "timing")}
    bad.write_text(yaml.safe_dump({**REFERENCE, "comparisons": [entry(), empty]}))
    with pytest.raises(ValueError, match="comparison 2 .* has neither metrics nor timing"):
        fidelity.load_reference(bad)


def test_the_committed_reference_numbers_are_well_formed():
    reference = fidelity.load_reference(Path(__file__).parent.parent / "config" / "reference_numbers.yaml")
    for e in reference["comparisons"]:
        assert e["code"] in reference["code"] and e["source"], e
        # the official code's six metrics, or none for a speed-only entry (which then has its timing)
        assert set(e.get("metrics", {})) == set(METRICS) or ("metrics" not in e and e["timing"]), e
        assert e["inputs"]["dataset_sha256"] and e["model"] and e["train"]
        for seed, curve in e.get("validation_curves", {}).items():
            # a curve ends where that official run stopped, with one value per validated epoch
            assert seed in fidelity.Row(e, []).reference_seeds, (e["method"], seed)
            assert curve["epoch"] == sorted(set(curve["epoch"])) and curve["epoch"][0] == 0, (e["method"], seed)
            assert all(len(curve[m]) == len(curve["epoch"]) for m in ("recall@20", "ndcg@20")), (e["method"], seed)
            assert curve["epoch"][-1] + 1 == fidelity._of_seed(e, "epochs_run", seed), (e["method"], seed)
