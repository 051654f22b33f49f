"""Fidelity: our runs next to the official code's, on identical inputs and hyperparameters.

The numbers of the official code live in ``config/reference_numbers.yaml``: one entry per comparison, naming the
method, dataset and preset, the inputs both sides read (dataset checksum, text or knowledge-graph fingerprint),
the hyperparameters (in this harness's names), the reference's metrics, and where they come from. A run record
is matched to an entry only if all of these agree, so a tuned run or a run on other text is never compared with
a reference number it does not correspond to. Entries without a matching run are listed as not run; runs without
a matching entry are listed too, with the reason the file's ``pending`` list gives (e.g. a reference run that has
not finished), so that nothing is silently left out.

An entry may also carry the official run's validation curve (``validation_curves``: per seed, the validated epochs
and the headline metrics as its log printed them). Where a run of ours has the same seed, the report gives the
largest gap between the two curves at the epochs both validated, and ``plot_curves`` draws them side by side: the
place to look when two runs end at different best epochs.

An entry may state an epoch budget (``train.max_epochs``): for a configuration whose full runs do not fit a CPU,
both implementations ran exactly that many epochs, and only runs of ours with the same budget match it. A run of
ours that used up its budget without stopping early matches no entry without one, since it did not finish the
training the reference's numbers come from.

An entry without ``metrics`` records a speed measurement only (``timing``: both implementations' epoch time on
the same inputs), for a configuration whose full runs do not fit the machine the table was made on; its row says
so instead of comparing numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from tabulate import tabulate

from recrepro.metrics import HEADLINE, metric_names, short_metric

TOLERANCE = 0.03  # relative, on the headline metrics


def load_reference(path: Path | str) -> dict[str, Any]:
    """The reference numbers file: ``{"code": {...}, "comparisons": [...]}``."""
    reference = yaml.safe_load(Path(path).read_text())
    if not isinstance(reference, dict) or not isinstance(reference.get("comparisons"), list):
        raise ValueError(f"{path}: expected a mapping with a `comparisons` list")
    for number, entry in enumerate(reference["comparisons"], start=1):
        if not entry.get("metrics") and not entry.get("timing"):
            raise ValueError(f"{path}: comparison {number} ({_kind(entry)}) has neither metrics nor timing")
    return reference


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
        except (TypeError, ValueError):
            return False
    return a == b


def _kind(item: dict) -> tuple[str, str, str]:
    """(method, dataset, preset) of a run record, a comparison or a pending entry."""
    return item["method"], item["dataset"], item.get("preset", "faithful")


def mismatch(record: dict, entry: dict) -> str | None:
    """How ``record`` differs from the configuration and inputs of ``entry`` (the first difference), or None."""
    if _kind(record) != _kind(entry):
        return f"method, dataset and preset are {_kind(record)}, the reference's {_kind(entry)}"
    inputs = record.get("inputs", {})
    for name, expected in entry.get("inputs", {}).items():
        actual = inputs.get(name)
        if isinstance(expected, dict):
            actual = actual if isinstance(actual, dict) else {}
            differing = [(f"inputs.{name}.{k}", actual.get(k), v) for k, v in expected.items() if actual.get(k) != v]
        else:
            differing = [(f"inputs.{name}", actual, expected)] if actual != expected else []
        if differing:
            field, have, want = differing[0]
            return f"{field} is {_short(have)} here, {_short(want)} in the reference run"
    config = record.get("config", {})
    if "max_epochs" not in entry.get("train", {}) and record.get("stopped_early") is False:
        budget = config.get("train", {}).get("max_epochs")
        return f"it ran its whole budget of {budget} epochs, while the reference run stopped early"
    for section in ("model", "train"):
        for key, value in entry.get(section, {}).items():
            have = config.get(section, {}).get(key)
            if not _same(have, value):
                return f"{section}.{key} is {have} here, {value} in the reference run"
    return None


def matches(record: dict, entry: dict) -> bool:
    """Whether ``record`` ran the configuration of ``entry`` on the same inputs."""
    return mismatch(record, entry) is None


def _short(value: Any) -> str:
    """A checksum cut to 12 characters, anything else as is."""
    text = str(value)
    return f"{text[:12]}…" if isinstance(value, str) and len(text) == 64 else text


@dataclass
class Row:
    entry: dict
    records: list[dict]

    @property
    def part(self) -> str:
        return self.entry.get("part", "test")

    def ours(self, metric: str) -> float | None:
        values = [r["metrics"][self.part][metric] for r in self.records if self.part in r["metrics"]]
        return sum(values) / len(values) if values else None

    def difference(self, metric: str) -> float | None:
        ours, ref = self.ours(metric), self.reference(metric)
        return None if ours is None or ref is None else (ours - ref) / ref

    @property
    def speed_only(self) -> bool:
        """The entry records the two implementations' speed, and no metrics of the official code."""
        return not self.entry.get("metrics")

    def reference(self, metric: str) -> float | None:
        """The official code's value of ``metric`` (None for an entry that records speed only)."""
        return self.entry.get("metrics", {}).get(metric)

    @property
    def reference_seeds(self) -> list:
        return self.entry.get("seeds") or [self.entry.get("seed", "?")]

    def spread(self, metric: str) -> str:
        """Per-seed values of both sides, where either has more than one seed."""
        if len(self.reference_seeds) < 2 and len(self.records) < 2:
            return ""
        by_seed = self.entry.get("metrics_by_seed", {})
        ref = ", ".join(_fmt(by_seed[s][metric]) for s in self.reference_seeds if s in by_seed) or "–"
        ours = ", ".join(_fmt(r["metrics"][self.part][metric]) for r in self.records)
        return f"{short_metric(metric)} per seed, reference {ref}; ours {ours}"

    def within(self, tolerance: float) -> bool | None:
        diffs = [self.difference(m) for m in HEADLINE]
        if any(d is None for d in diffs):
            return None
        return all(abs(d) <= tolerance for d in diffs)


@dataclass(frozen=True)
class CurveGap:
    """The official validation curve of one seed against ours: the epochs both validated, the largest gaps there."""

    seed: int
    epochs: list[int]
    largest: dict[str, float]  # headline metric -> max |ours - reference| over ``epochs``
    last: dict[str, float]  # headline metric -> ours - reference at the last of ``epochs``
    ours_epochs_run: int | None = None


def _of_seed(entry: dict, key: str, seed: int):
    """An entry's value of ``key`` for one seed: lists (best_epoch, epochs_run) are aligned with ``seeds``."""
    value = entry.get(key)
    if not isinstance(value, list):
        return value
    seeds = entry.get("seeds") or []
    return value[seeds.index(seed)] if seed in seeds and len(seeds) == len(value) else None


def curve_pairs(row: Row) -> list[tuple[dict, dict, dict]]:
    """(our run record, reference curve, our curve) for every run of ours whose seed has an official curve.

    A curve is ``{"epoch": [...], metric: [...]}``; ours comes from the run record's validation history."""
    curves = row.entry.get("validation_curves") or {}
    pairs = []
    for record in row.records:
        reference = curves.get(record["seed"])
        history = [h for h in record.get("history", []) if "val" in h]
        if reference and history:
            ours = {"epoch": [h["epoch"] for h in history]}
            ours |= {m: [h["val"][m] for h in history] for m in HEADLINE}
            pairs.append((record, reference, ours))
    return pairs


def curve_gaps(row: Row) -> list[CurveGap]:
    """The largest gap between the official validation curve and ours, per seed, at the epochs both validated."""
    gaps = []
    for record, reference, ours in curve_pairs(row):
        at_ref = {e: k for k, e in enumerate(reference["epoch"])}
        at_ours = {e: k for k, e in enumerate(ours["epoch"])}
        common = sorted(set(at_ref) & set(at_ours))
        if common:
            metrics = [m for m in HEADLINE if m in reference]
            gap = {m: [ours[m][at_ours[e]] - reference[m][at_ref[e]] for e in common] for m in metrics}
            largest, last = {m: max(map(abs, gap[m])) for m in metrics}, {m: gap[m][-1] for m in metrics}
            gaps.append(CurveGap(record["seed"], common, largest, last, record.get("epochs_run")))
    return gaps


def rows(records: list[dict], reference: dict) -> list[Row]:
    return [Row(entry, [r for r in records if matches(r, entry)]) for entry in reference["comparisons"]]


def _fmt(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _signed(value: float | None) -> str:
    return "–" if value is None else f"{round(value, 4) + 0.0:+.4f}"  # + 0.0: no "-0.0000"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:+.1%}"


def _speed(entry: dict) -> tuple[str, str]:
    timing = entry.get("timing")
    if not timing:
        return "–", "–"
    ref_s, ours_s = timing["reference_s_per_epoch"], timing["ours_s_per_epoch"]
    seconds = f"{ref_s:.3g} / {ours_s:.3g} ({ref_s / ours_s:.1f}x)"
    memory = "–"
    if timing.get("reference_peak_rss_mb") and timing.get("ours_peak_rss_mb"):
        memory = f"{timing['reference_peak_rss_mb']:,.0f} / {timing['ours_peak_rss_mb']:,.0f}"
    return seconds, memory


def _label(entry: dict) -> str:
    preset = entry.get("preset", "faithful")
    budget = entry.get("train", {}).get("max_epochs")
    qualifiers = ([] if preset == "faithful" else [preset]) + ([f"first {budget} epochs"] if budget else [])
    return entry["method"] + (f" ({', '.join(qualifiers)})" if qualifiers else "")


def report(
    records: list[dict], reference: dict, tolerance: float = TOLERANCE, plot_name: str | None = None
) -> tuple[str, bool]:
    """The fidelity table (markdown) and whether every compared row is within ``tolerance`` or explained.

    ``plot_name``: the file name of the validation-curve plot (``plot_curves``) to link, if one is written."""
    table_rows, detail_rows, notes = [], [], []
    all_ok = True
    all_rows = rows(records, reference)
    for number, row in enumerate(all_rows, start=1):
        entry = row.entry
        within = row.within(tolerance)
        if row.speed_only:
            verdict = "speed only"
        elif within is None:
            verdict = "not run"
        elif within:
            verdict = "yes"
        elif entry.get("explained"):
            verdict = f"no, explained [{number}]"
        else:
            verdict = "**no**"
            all_ok = False
        seconds, memory = _speed(entry)
        best = entry.get("best_epoch", "–")
        epochs = f"{', '.join(map(str, best)) if isinstance(best, list) else best} / " + (
            ", ".join(str(r["best_epoch"]) for r in row.records) if row.records else "–"
        )
        headline = []
        for metric in HEADLINE:
            headline += [_fmt(row.ours(metric)), _fmt(row.reference(metric)), _pct(row.difference(metric))]
        table_rows.append(
            [
                f"{_label(entry)} [{number}]",
                entry["dataset"],
                entry.get("text", "none"),
                f"{'–' if row.speed_only else len(row.reference_seeds)} / {len(row.records)}",
                *headline,
                verdict,
                epochs,
                seconds,
                memory,
            ]
        )
        if not row.speed_only:  # a speed-only entry has no numbers to list
            detail = [f"[{number}]", _label(entry), entry["dataset"], row.part]
            detail_rows.append(detail + [f"{_fmt(row.ours(m))} / {_fmt(row.reference(m))}" for m in metric_names()])
        notes.append(_note(number, row))
    headers = ["Method", "Dataset", "Text", "Seeds ref / ours"]
    for metric in HEADLINE:
        label = short_metric(metric)
        headers += [f"{label} ours", f"{label} ref", "diff"]
    headers += [f"Within {tolerance:.0%}", "Best epoch ref / ours", "s/epoch ref / ours", "Peak MB ref / ours"]
    detail_headers = ["", "Method", "Dataset", "Part"] + [f"{short_metric(m)} ours / ref" for m in metric_names()]
    fmt = {"tablefmt": "github", "disable_numparse": True}
    code = "\n".join(f"- **{name}**: {_code(spec)}" for name, spec in reference.get("code", {}).items())
    text = (
        "# Fidelity: ours vs the official code on identical inputs\n\n"
        f"{tabulate(table_rows, headers=headers, **fmt)}\n\n"
        "Ours and the reference: the test metrics at the best validation epoch (validation metrics where the "
        "Part column below says val), averaged over the seeds each side ran (per-seed values in the notes), the same "
        "hyperparameters and the same input files on both sides (checked by checksum). "
        f"*Within {tolerance:.0%}*: both {' and '.join(map(short_metric, HEADLINE))}"
        " within that relative difference. Speed: training seconds per epoch and peak resident memory of both "
        "implementations measured back to back on the same machine (the note says which), ratio = reference / "
        "ours.\n\n"
        f"## All metrics\n\n{tabulate(detail_rows, headers=detail_headers, **fmt)}\n\n"
        f"{_curves_section(all_rows, plot_name)}"
        f"## Reference code\n\n{code}\n\n## Notes and provenance\n\n"
        + "\n".join(notes)
        + "\n"
        + _unmatched(records, reference, all_rows)
    )
    return text, all_ok


def _curves_section(all_rows: list[Row], plot_name: str | None) -> str:
    """Validation curves, official vs ours: the largest gap per row and seed, and which rows have no curve."""
    table, without = [], []
    for number, row in enumerate(all_rows, start=1):
        gaps = curve_gaps(row)
        if not gaps and row.records:
            without.append(f"[{number}]")
        for gap in gaps:
            stopped = f"{_of_seed(row.entry, 'epochs_run', gap.seed) or '–'} / {gap.ours_epochs_run or '–'}"
            table.append(
                [f"[{number}]", _label(row.entry), row.entry["dataset"], gap.seed, len(gap.epochs)]
                + [f"{gap.epochs[0]}–{gap.epochs[-1]}", *(_fmt(gap.largest.get(m)) for m in HEADLINE)]
                + [_signed(gap.last.get(m)) for m in HEADLINE]
                + [stopped]
            )
    if not table:
        return ""
    headers = ["", "Method", "Dataset", "Seed", "Common validations", "Epochs"]
    headers += [f"Largest gap {short_metric(m)}" for m in HEADLINE]
    headers += [f"Last gap {short_metric(m)}" for m in HEADLINE] + ["Epochs run ref / ours"]
    text = (
        "## Validation curves\n\n"
        f"{tabulate(table, headers=headers, tablefmt='github', disable_numparse=True)}\n\n"
        "The official run's validation metrics as its log printed them (4 decimals) and ours from the run record, "
        "compared at the epochs both validated: the largest absolute difference there, and ours minus the "
        "official at the last of them."
    )
    if without:
        text += f" Rows with a run of ours but no recorded official curve: {', '.join(without)}."
    if plot_name:
        text += f"\n\n![Validation curves, official code vs ours]({plot_name})"
    return text + "\n\n"


def plot_curves(records: list[dict], reference: dict, path: Path) -> None:
    """Official and our validation curves, one panel per row and seed with both (headline metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (number, row, record, ref, ours)
        for number, row in enumerate(rows(records, reference), start=1)
        for record, ref, ours in curve_pairs(row)
    ]
    if not panels:
        raise ValueError("no row has both an official validation curve and a run of ours to plot")
    columns = min(3, len(panels))
    rows_needed = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows_needed, columns, figsize=(5 * columns, 3.3 * rows_needed), squeeze=False)
    for ax, (number, row, record, ref, ours) in zip(axes.flat, panels):
        seed = record["seed"]
        for metric, color in zip(HEADLINE, ("tab:blue", "tab:orange")):
            if metric in ref:
                ax.plot(ref["epoch"], ref[metric], "--", color=color, label=f"official {short_metric(metric)}")
            ax.plot(ours["epoch"], ours[metric], "-", color=color, alpha=0.8, label=f"ours {short_metric(metric)}")
        ax.axvline(record["best_epoch"], color="grey", linewidth=0.8)
        best = _of_seed(row.entry, "best_epoch", seed)
        if best is not None:
            ax.axvline(best, color="grey", linewidth=0.8, linestyle="--")
        ax.set_title(f"[{number}] {_label(row.entry)}, {row.entry['dataset']}, seed {seed}", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="grey", linewidth=0.8))
    labels.append("best epoch (dashed: official)")
    fig.legend(handles, labels, fontsize=8, loc="upper center", ncol=5, bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _unmatched(records: list[dict], reference: dict, all_rows: list[Row]) -> str:
    """Our runs that no comparison matches, each with the reason ``pending`` gives, or how it differs from them."""
    matched = {id(r) for row in all_rows for r in row.records}
    left = [r for r in records if id(r) not in matched]
    if not left:
        return ""
    reasons = {_kind(p): p["reason"] for p in reference.get("pending", [])}
    lines = []
    for r in left:
        key = _kind(r)
        reason = reasons.get(key) or _closest_mismatch(r, reference)
        metrics = ", ".join(
            f"{part} {short_metric(m)} {_fmt(r['metrics'][part][m])}" for part in ("val", "test") for m in HEADLINE
        )
        lines.append(
            f"- {key[0]}{'' if key[2] == 'faithful' else f' ({key[2]})'} on {key[1]}, seed {r['seed']}: "
            f"{metrics}. Not compared: {reason}."
        )
    return "\n## Our runs without a reference number\n\n" + "\n".join(lines) + "\n"


def _closest_mismatch(record: dict, reference: dict) -> str:
    """Why no entry matches: how the run differs from the entries of its method, dataset and preset."""
    same_kind = [mismatch(record, entry) for entry in reference["comparisons"] if _kind(entry) == _kind(record)]
    if not same_kind:
        return "no reference entry for this method, dataset and preset"
    return "no reference entry has this run's inputs and hyperparameters (" + "; ".join(same_kind) + ")"


def _code(spec: dict) -> str:
    patches = "; ".join(spec.get("patches", []))
    return f"{spec['repository']} @ {spec['commit']}" + (f". Patches to run it here: {patches}." if patches else "")


def _note(number: int, row: Row) -> str:
    entry = row.entry
    parts = [f"[{number}] {_label(entry)} on {entry['dataset']}: {entry['source']}"]
    for key in ("config", "command", "machine", "note", "explained"):
        if entry.get(key):
            parts.append(f"{key.replace('_', ' ').capitalize()}: {entry[key]}")
    spread = "; ".join(filter(None, (row.spread(m) for m in HEADLINE)))
    if spread:
        parts.append(f"Seeds: {spread}")
    if entry.get("timing"):
        parts.append(f"Speed measured with: {entry['timing']['how']}")
    parts.append(
        "Ours: "
        + (
            ", ".join(
                f"seed {r['seed']} ({r.get('provenance', {}).get('git', {}).get('commit', '?')[:10]})"
                for r in row.records
            )
            if row.records
            else "no matching run record"
        )
    )
    return "- " + " ".join(p if p.endswith(".") else p + "." for p in parts)
