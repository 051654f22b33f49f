"""Paper-style markdown tables, generated from prepared datasets and run records (never edited by hand)."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from tabulate import tabulate

from recrepro.data.cards import load_card
from recrepro.provenance import git_commit

METRIC_COLUMNS = ("recall@5", "recall@10", "recall@20", "ndcg@5", "ndcg@10", "ndcg@20")
SHORT = {"recall": "R", "ndcg": "N"}


def short_metric(metric: str) -> str:
    name, _, k = metric.partition("@")
    return f"{SHORT.get(name, name)}@{k}"


def table1(meta_files: Iterable[Path]) -> str:
    """Dataset statistics: users, items, interactions (train/val/test and total), density."""
    rows = []
    for path in meta_files:
        meta = json.loads(Path(path).read_text())
        s = meta["stats"]
        total = s["train"] + s["val"] + s["test"]
        card = load_card(meta["name"])
        rows.append([card.title, f"{s['users']:,}", f"{s['items']:,}", f"{total:,}",
                     f"{s['train']:,} / {s['val']:,} / {s['test']:,}", f"{total / (s['users'] * s['items']):.2e}"])
    table = tabulate(rows, headers=["Dataset", "#Users", "#Items", "#Interactions", "Train / Val / Test", "Density"],
                     tablefmt="github", colalign=("left", "right", "right", "right", "right", "right"))
    return ("# Table 1: dataset statistics\n\n" + table + "\n\n"
            "Density = interactions / (users x items), over all three parts. Statistics are checked against each "
            "dataset's card (datasets/<name>.yaml) when the data is loaded.\n")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


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


def _fmt(mean: float, std: float, n: int, mark: str | None) -> str:
    text = f"{mean:.4f}" + (f" ± {std:.4f}" if n > 1 else "")
    if mark == "bold":
        return f"**{text}**"
    if mark == "underline":
        return f"<u>{text}</u>"
    return text


def load_records(paths: Iterable[Path]) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def table2(records: list[dict], variants: dict[str, dict], title: str = "Table 2: overall performance") -> str:
    """Test metrics (mean ± std over seeds) per variant and dataset, best in bold and second underlined."""
    by_key: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        by_key[(record["variant"], record["dataset"])].append(record)
    datasets = sorted({record["dataset"] for record in records})
    order = [v for v in variants if any((v, d) in by_key for d in datasets)]

    cells: dict[tuple[str, str, str], tuple[float, float, int]] = {}
    for (variant, dataset), runs in by_key.items():
        for metric in METRIC_COLUMNS:
            mean, std = mean_std([r["metrics"]["test"][metric] for r in runs])
            cells[(variant, dataset, metric)] = (mean, std, len(runs))
    marks = {}
    for dataset in datasets:
        for metric in METRIC_COLUMNS:
            column = {v: cells[(v, dataset, metric)][0] for v in order if (v, dataset, metric) in cells}
            marks.update({(v, dataset, metric): m for v, m in rank_marks(column).items()})

    headers = ["Method"] + [f"{dataset} {short_metric(m)}" for dataset in datasets for m in METRIC_COLUMNS]
    rows = []
    for variant in order:
        row = [variants[variant].get("label", variant)]
        for dataset in datasets:
            for metric in METRIC_COLUMNS:
                cell = cells.get((variant, dataset, metric))
                row.append(_fmt(*cell, marks.get((variant, dataset, metric))) if cell else "–")
        rows.append(row)
    body = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    return f"# {title}\n\n{body}\n\n{footer(records)}"


def footer(records: list[dict]) -> str:
    """Provenance and every deviation from the reference, for the records in a table."""
    seeds = sorted({r["seed"] for r in records})
    commits = sorted({r["provenance"]["git"]["commit"][:12] + ("+dirty" if r["provenance"]["git"]["dirty"] else "")
                      for r in records})
    checksums = sorted({f"{r['dataset']} {r['dataset_sha256'][:12]}" for r in records})
    packages = records[0]["provenance"]["packages"] if records else {}
    lines = [
        "Test-set metrics at the epoch with the best validation Recall@20; full ranking over all items with only "
        "training items masked. Mean ± sample std over seeds; **bold** best, <u>underlined</u> second.",
        "",
        f"- Seeds: {', '.join(map(str, seeds))} ({len(records)} runs)",
        f"- Data (sha256 of canonical interactions): {'; '.join(checksums)}",
        f"- Code: {', '.join(commits)} (this table generated at {git_commit()['commit'][:12]})",
        f"- Packages: {', '.join(f'{k} {v}' for k, v in packages.items() if v != 'not installed')}",
    ]
    deviations = sorted({(r["variant"], d) for r in records for d in r["deviations"]})
    if deviations:
        lines += ["", "Deviations from the reference configuration:"]
        lines += [f"- {variant}: {text}" for variant, text in deviations]
    return "\n".join(lines) + "\n"
