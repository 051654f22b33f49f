"""Reference vs ours: test metrics of run records next to numbers measured with the reference code."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import yaml
from tabulate import tabulate

from recrepro.stats import mean_std
from recrepro.tables import short_metric


def load_reference(path: Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def _entry(reference: dict, runs: list[dict], variant: str, dataset: str) -> dict | None:
    return reference.get(variant, reference.get(runs[0]["method"], {})).get(dataset)


def compare(records: list[dict], reference: dict, tolerance: float) -> tuple[str, bool]:
    """Markdown comparison table and whether every compared metric is within ``tolerance`` (relative).

    A record is matched to reference entries by its variant name, then by its method name.
    """
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        groups[(record.get("variant", record["method"]), record["dataset"])].append(record)
    rows, sources, all_ok = [], [], True
    for (variant, dataset), runs in sorted(groups.items()):
        entry = _entry(reference, runs, variant, dataset)
        if not entry:
            continue
        sources.append(f"- {variant} on {dataset}: {entry['source']}")
        for metric, ref_value in entry.get("test", {}).items():
            mean, std = mean_std([r["metrics"]["test"][metric] for r in runs])
            rel = (mean - ref_value) / ref_value
            ok = abs(rel) <= tolerance
            all_ok &= ok
            rows.append(
                [
                    variant,
                    dataset,
                    short_metric(metric),
                    f"{ref_value:.4f}",
                    f"{mean:.4f}" + (f" ± {std:.4f}" if len(runs) > 1 else ""),
                    f"{rel:+.1%}",
                    "yes" if ok else "**no**",
                ]
            )
        if "seconds_per_epoch" in entry:
            ours = sum(r["seconds_per_epoch"] for r in runs) / len(runs)
            rows.append(
                [
                    variant,
                    dataset,
                    "s/epoch",
                    f"{entry['seconds_per_epoch']:.2f}",
                    f"{ours:.2f}",
                    f"{entry['seconds_per_epoch'] / ours:.1f}x faster",
                    "",
                ]
            )
    if not rows:
        pairs = ", ".join(sorted(f"{variant} on {dataset}" for variant, dataset in groups))
        return (
            f"# Reference vs ours\n\nNo numbers measured with the reference code exist for these runs ({pairs}); "
            "the available ones are listed in config/reference_numbers.yaml.\n",
            True,
        )
    table = tabulate(
        rows,
        headers=["Method", "Dataset", "Metric", "Reference", "Ours", "Difference", f"Within {tolerance:.0%}"],
        tablefmt="github",
        disable_numparse=True,
    )
    seeds = sorted({r["seed"] for r in records})
    text = (
        f"# Reference vs ours\n\n{table}\n\nOurs: test metrics at the best validation epoch, seeds "
        f"{', '.join(map(str, seeds))}. Difference is relative to the reference.\n\nReference sources:\n"
        + "\n".join(sources)
        + "\n"
    )
    return text, all_ok
