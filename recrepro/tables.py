"""Paper-style markdown tables and plots, generated from prepared datasets and run records (never edited by hand).

Rows are *variants* (a method with a preset and overrides, named in the workflow config), in config order,
grouped by ``group`` (the backbone); an add-on names its ``baseline`` variant, against which its improvement
and paired significance are reported.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from recrepro.data.cards import load_card
from recrepro.metrics import HEADLINE, SELECTION, long_metric, metric_names, short_metric
from recrepro.provenance import git_commit
from recrepro.results import read_per_user
from recrepro.stats import ALPHA, compare, mean_std

METRIC_COLUMNS = metric_names()


def markdown(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


# ------------------------------------------------------------------------------------------------------ table 1


def table1(meta_files: Iterable[Path], title: str = "Table 1: dataset statistics") -> str:
    """Dataset statistics: users, items, interactions (train/val/test and total), density."""
    rows = []
    for path in meta_files:
        meta = json.loads(Path(path).read_text())
        s = meta["stats"]
        total = s["train"] + s["val"] + s["test"]
        card = load_card(meta["name"])
        rows.append(
            [
                card.title,
                f"{s['users']:,}",
                f"{s['items']:,}",
                f"{total:,}",
                f"{s['train']:,} / {s['val']:,} / {s['test']:,}",
                f"{total / (s['users'] * s['items']):.2e}",
            ]
        )
    table = tabulate(
        rows,
        headers=["Dataset", "#Users", "#Items", "#Interactions", "Train / Val / Test", "Density"],
        tablefmt="github",
        colalign=("left", "right", "right", "right", "right", "right"),
        disable_numparse=True,
    )
    return (
        f"# {title}\n\n" + table + "\n\n"
        "Density = interactions / (users x items), over all three parts. Statistics are checked against each "
        "dataset's card (datasets/<name>.yaml) when the data is loaded.\n"
    )


# --------------------------------------------------------------------------------------------- run collections


class Runs:
    """Run records grouped by (variant, dataset), with seeds in a common order."""

    def __init__(self, records: list[dict], paths: list[Path] | None = None) -> None:
        self.records = records
        self.paths = {id(r): p for r, p in zip(records, paths or [])}
        self.groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for record in records:
            self.groups[(record["variant"], record["dataset"])].append(record)
        for runs in self.groups.values():
            runs.sort(key=lambda r: r["seed"])
        self.datasets = sorted({r["dataset"] for r in records})

    @classmethod
    def load(cls, paths: Iterable[Path]) -> Runs:
        paths = [Path(p) for p in paths]
        return cls([json.loads(p.read_text()) for p in paths], paths)

    def get(self, variant: str, dataset: str) -> list[dict]:
        return self.groups.get((variant, dataset), [])

    def seeds(self, variant: str, dataset: str) -> list[int]:
        return [r["seed"] for r in self.get(variant, dataset)]

    def metric(self, variant: str, dataset: str, metric: str) -> list[float]:
        return [r["metrics"]["test"][metric] for r in self.get(variant, dataset)]

    def per_user(self, variant: str, dataset: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(users, values averaged over seeds) of the test metric."""
        values, users = [], None
        for record in self.get(variant, dataset):
            run_users, metrics = read_per_user(self.paths[id(record)], "test")
            if users is not None and not np.array_equal(users, run_users):
                raise ValueError(f"{variant} on {dataset}: runs evaluated different users")
            users = run_users
            values.append(metrics[metric])
        return users, np.mean(values, axis=0)


def _format(mean: float, std: float, n: int, mark: str | None) -> str:
    text = f"{mean:.4f}" + (f" ± {std:.4f}" if n > 1 else "")
    return {"bold": f"**{text}**", "underline": f"<u>{text}</u>"}.get(mark, text)


def rank_marks(values: dict[str, float]) -> dict[str, str]:
    """Bold for the best value, underline for the second best (ties share the mark)."""
    distinct = sorted(set(values.values()), reverse=True)
    marks = {}
    for key, value in values.items():
        if value == distinct[0]:
            marks[key] = "bold"
        elif len(distinct) > 1 and value == distinct[1]:
            marks[key] = "underline"
    return marks


def metric_table(runs: Runs, variants: dict[str, dict], order: list[str]) -> str:
    """Rows = variants (grouped), columns = dataset x metric; mean ± std over seeds; best bold, second underlined."""
    present = [v for v in order if any(runs.get(v, d) for d in runs.datasets)]
    headers = ["Group", "Method"] + [f"{d} {short_metric(m)}" for d in runs.datasets for m in METRIC_COLUMNS]
    marks: dict[tuple[str, str, str], str] = {}
    for dataset in runs.datasets:
        for metric in METRIC_COLUMNS:
            column = {v: float(np.mean(runs.metric(v, dataset, metric))) for v in present if runs.get(v, dataset)}
            marks.update({(v, dataset, metric): m for v, m in rank_marks(column).items()})
    rows, previous_group = [], None
    for variant in present:
        group = variants[variant].get("group", "")
        row = [group if group != previous_group else "", variants[variant].get("label", variant)]
        previous_group = group
        for dataset in runs.datasets:
            for metric in METRIC_COLUMNS:
                values = runs.metric(variant, dataset, metric)
                row.append(
                    _format(*mean_std(values), len(values), marks.get((variant, dataset, metric))) if values else "–"
                )
        rows.append(row)
    return markdown(rows, headers)


def improvement_table(runs: Runs, variants: dict[str, dict], order: list[str]) -> str:
    """Each variant with a ``baseline``: relative improvement of the mean, with paired significance marks."""
    headers = ["Method", "vs"] + [f"{d} {short_metric(m)}" for d in runs.datasets for m in METRIC_COLUMNS]
    rows = []
    for variant in order:
        base = variants[variant].get("baseline")
        if not base or not any(runs.get(variant, d) and runs.get(base, d) for d in runs.datasets):
            continue
        row = [variant_name(variant, variants), variant_name(base, variants)]
        for dataset in runs.datasets:
            if not (runs.get(variant, dataset) and runs.get(base, dataset)):
                row += ["–"] * len(METRIC_COLUMNS)
                continue
            if [r["seed"] for r in runs.get(variant, dataset)] != [r["seed"] for r in runs.get(base, dataset)]:
                raise ValueError(f"{variant} and {base} on {dataset} were run with different seeds")
            for metric in METRIC_COLUMNS:
                _, addon_users = runs.per_user(variant, dataset, metric)
                _, base_users = runs.per_user(base, dataset, metric)
                c = compare(
                    runs.metric(variant, dataset, metric), runs.metric(base, dataset, metric), addon_users, base_users
                )
                row.append(f"{c.relative:+.1%}{c.marks()}")
        rows.append(row)
    if not rows:
        return ""
    return (
        markdown(rows, headers) + f"\n\nRelative improvement of the mean over the baseline variant. † p < {ALPHA} "
        "in a two-sided paired t-test over seeds (needs at least two seeds); * p < "
        f"{ALPHA} in a two-sided Wilcoxon signed-rank test over test users (per-user values averaged over seeds). "
        "No correction for multiple comparisons."
    )


# --------------------------------------------------------------------------------------------------- footers


def _text_models(records: list[dict]) -> list[str]:
    return sorted({r["side_inputs"]["text"] for r in records if "text" in r.get("side_inputs", {})})


def variant_name(variant: str, variants: dict[str, dict]) -> str:
    """A variant's label, prefixed by its backbone group for add-ons (``DCCF +RLMRec-Con``)."""
    spec = variants.get(variant, {})
    label = spec.get("label", variant)
    return f"{spec['group']} {label}" if label.startswith("+") and spec.get("group") else label


def footer(records: list[dict], variants: dict[str, dict], tuning: dict | None, extra: list[str] = ()) -> str:
    """Provenance, protocol, tuning budget and every deviation from the reference."""
    seeds = sorted({r["seed"] for r in records})
    commits = sorted(
        {r["provenance"]["git"]["commit"][:12] + ("+dirty" if r["provenance"]["git"]["dirty"] else "") for r in records}
    )
    checksums = sorted({f"{r['dataset']} {r['dataset_sha256'][:12]}" for r in records})
    packages = records[0]["provenance"]["packages"] if records else {}
    presets = sorted(
        {f"{variant_name(r['variant'], variants)}: {r['preset']}" for r in records if r["preset"] != "faithful"}
    )
    selections = {r.get("config", {}).get("train", {}).get("select_metric", SELECTION) for r in records}
    selection = " / ".join(sorted(map(long_metric, selections))) or long_metric(SELECTION)
    if tuning:
        budget = (
            f"Optuna TPE on validation {selection}, {tuning['trials']} trials per method and dataset "
            f"({tuning['workers']} workers, at most {tuning['max_epochs']} epochs per trial"
            + (f", {tuning['timeout_s']} s per worker" if tuning.get("timeout_s") else "")
            + "), the same budget for every method; the first trial is the reference configuration; final runs use "
            "the best trial's hyperparameters"
        )
    else:
        budget = "not tuned: every method uses the reference implementation's released hyperparameters (faithful)"
    lines = [
        f"Test-set metrics at the epoch with the best validation {selection} (the test set is evaluated once per run); "
        "full ranking over all items with only training items masked.",
        "",
        f"- Tuning: {budget}",
        f"- Seeds: {', '.join(map(str, seeds))} ({len(records)} runs)",
        f"- Mode: faithful unless listed: {'; '.join(presets) if presets else 'all faithful'}",
        f"- LLM stage: {'; '.join(_text_models(records)) or 'no text methods in this table'}",
        f"- Data (sha256 of the canonical interactions): {'; '.join(checksums)}",
        f"- Code: {', '.join(commits)} (table generated at {git_commit()['commit'][:12]})",
        f"- Packages: {', '.join(f'{k} {v}' for k, v in packages.items() if v != 'not installed')}",
        *[f"- {line}" for line in extra],
    ]
    deviations: dict[str, set[str]] = {}
    for r in records:
        if r["deviations"]:
            deviations.setdefault(variant_name(r["variant"], variants), set()).update(r["deviations"])
    if deviations:
        lines += ["", "Deviations from the reference configuration, per variant:"]
        for variant, texts in sorted(deviations.items()):
            lines += [f"- {variant}:", *[f"  - {text}" for text in sorted(texts)]]
    return "\n".join(lines) + "\n"


MEAN_STD = "Mean ± sample std over seeds; **bold** best, <u>underlined</u> second best per column."


def table2(
    runs: Runs, variants: dict[str, dict], tuning: dict | None, see_also: list[str] = (), claims: str | None = None
) -> str:
    """Overall performance, grouped by backbone, with each add-on's improvement; ``claims`` links the verdicts."""
    order = list(variants)
    improvements = improvement_table(runs, variants, order)
    parts = ["# Table 2: overall performance", ""]
    if claims:
        parts += [f"Verdicts on the paper's claims, with effect sizes, intervals and tests: [{claims}]({claims}).", ""]
    parts += [metric_table(runs, variants, order), "", MEAN_STD, ""]
    if improvements:
        parts += ["## Improvement of each add-on over its backbone", "", improvements, ""]
    parts += [footer(runs.records, variants, tuning, [f"See also: {', '.join(see_also)}"] if see_also else [])]
    return "\n".join(parts)


def table3(runs: Runs, variants: dict[str, dict], order: list[str], tuning: dict | None) -> str:
    """The ablation table: the full model first, then each ablation with its change relative to the full model."""
    improvements = improvement_table(runs, variants, order)
    parts = ["# Table 3: IRLLRec ablations", "", metric_table(runs, variants, order), "", MEAN_STD, ""]
    if improvements:
        parts += ["## Change relative to the full model", "", improvements, ""]
    parts += [footer(runs.records, variants, tuning)]
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------ efficiency


def efficiency_table(runs: Runs, variants: dict[str, dict]) -> str:
    """Time per epoch, epochs to the best validation, epochs run and peak memory, mean over seeds."""
    rows = []
    for variant in variants:
        for dataset in runs.datasets:
            records = runs.get(variant, dataset)
            if not records:
                continue
            mean = {
                key: float(np.mean([r[key] for r in records]))
                for key in (
                    "seconds_per_epoch",
                    "seconds_per_validation",
                    "best_epoch",
                    "epochs_run",
                    "train_seconds",
                    "peak_rss_mb",
                )
            }
            rows.append(
                [
                    variant_name(variant, variants),
                    dataset,
                    f"{mean['seconds_per_epoch']:.3f}",
                    f"{mean['seconds_per_validation']:.3f}",
                    f"{mean['best_epoch']:.0f}",
                    f"{mean['epochs_run']:.0f}",
                    f"{mean['train_seconds']:.0f}",
                    f"{mean['peak_rss_mb']:.0f}",
                    f"{records[0]['n_parameters']:,}",
                    records[0]["device"],
                ]
            )
    headers = [
        "Method",
        "Dataset",
        "s/epoch",
        "s/validation",
        "best epoch",
        "epochs run",
        "train s",
        "peak RSS (MB)",
        "#params",
        "device",
    ]
    return (
        "# Efficiency\n\n" + markdown(rows, headers) + "\n\nMeans over seeds of the final runs. Time per epoch "
        "is training only (negative sampling, forward, backward, optimizer); validation is timed separately. Peak "
        "RSS is the training process's maximum resident memory (ru_maxrss), including the Python runtime.\n"
    )


# --------------------------------------------------------------------------------------------------- sparsity


def user_groups(train_counts: np.ndarray, users: np.ndarray, bins: tuple[int, ...] | None) -> dict[str, dict]:
    """Named groups of evaluated users by training-interaction count: quartiles, and the card's fixed bins."""
    counts = train_counts[users]
    groups: dict[str, dict] = {}
    edges = np.quantile(counts, [0.25, 0.5, 0.75])
    bounds = [counts.min() - 1, *edges, counts.max()]
    for q in range(4):
        low, high = bounds[q], bounds[q + 1]
        member = (counts > low) & (counts <= high)
        groups[f"Q{q + 1} ({int(low) + 1}-{int(high)})"] = {"kind": "quartile", "mask": member}
    if bins:
        lower = 0
        for upper in [*bins, None]:
            member = (counts > lower) & (counts <= upper if upper is not None else True)
            label = f"{lower + 1}-{upper}" if upper is not None else f">{lower}"
            groups[f"bin {label}"] = {"kind": "bin", "mask": member}
            lower = upper if upper is not None else lower
    return groups


def sparsity(
    runs: Runs,
    variants: dict[str, dict],
    train_counts: dict[str, np.ndarray],
    bins: dict[str, tuple[int, ...] | None],
    plot_path: Path | None = None,
) -> str:
    """The headline metrics (Recall and NDCG at the largest cut-off) per user group and variant (mean over seeds),
    and a plot of them."""
    sections, plot_data = ["# Sparsity analysis", ""], {}
    for dataset in runs.datasets:
        present = [v for v in variants if runs.get(v, dataset)]
        if not present:
            continue
        users, _ = runs.per_user(present[0], dataset, HEADLINE[0])
        groups = user_groups(train_counts[dataset], users, bins.get(dataset))
        headers = ["Group", "#users"] + [
            f"{variant_name(v, variants)} {m}" for v in present for m in map(short_metric, HEADLINE)
        ]
        rows = []
        for name, group in groups.items():
            row = [name, f"{int(group['mask'].sum()):,}"]
            for variant in present:
                for metric in HEADLINE:
                    _, values = runs.per_user(variant, dataset, metric)
                    value = float(values[group["mask"]].mean()) if group["mask"].any() else float("nan")
                    row.append(f"{value:.4f}")
                    if group["kind"] == "quartile":
                        plot_data.setdefault(dataset, {}).setdefault(metric, {}).setdefault(variant, []).append(value)
            rows.append(row)
        plot_data.setdefault(dataset, {})["groups"] = [n for n, g in groups.items() if g["kind"] == "quartile"]
        sections += [f"## {dataset}", "", markdown(rows, headers), ""]
    sections.append(
        "Users with at least one test item, grouped by their number of training interactions: quartiles "
        "(Q1 = sparsest) and the dataset card's fixed bins. Test metrics, per-user values averaged over "
        "seeds, then over the group's users."
    )
    if plot_path is not None:
        _plot_sparsity(plot_data, variants, plot_path)
        sections.append(f"\n![{' and '.join(map(long_metric, HEADLINE))} by user group]({plot_path.name})")
    return "\n".join(sections) + "\n"


def _plot_sparsity(data: dict, variants: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(data)
    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 3.6 * len(datasets)), squeeze=False)
    for row, dataset in enumerate(datasets):
        groups = data[dataset]["groups"]
        for col, metric in enumerate(HEADLINE):
            ax = axes[row][col]
            for variant, values in data[dataset].get(metric, {}).items():
                ax.plot(range(len(groups)), values, marker="o", label=variant_name(variant, variants))
            ax.set_xticks(range(len(groups)), groups, fontsize=8)
            ax.set_title(f"{dataset}: {short_metric(metric)} by training-interaction quartile", fontsize=10)
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
