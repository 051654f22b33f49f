"""The evaluation's metrics and cut-offs, defined once: the evaluator, the run configuration and every table
derive their names from here (and no module here imports torch)."""

from __future__ import annotations

MEASURES = ("recall", "ndcg")
CUTOFFS = (5, 10, 20)  # the reference's test.k
SELECTION = "recall@20"  # the reference selects on recall at its largest cut-off
_SHORT = {"recall": "R", "ndcg": "N"}
_LONG = {"recall": "Recall", "ndcg": "NDCG"}


def metric_name(measure: str, k: int) -> str:
    return f"{measure}@{k}"


def metric_names(ks: tuple[int, ...] = CUTOFFS) -> tuple[str, ...]:
    """Every metric the evaluator computes for cut-offs ``ks``: recalls first, then NDCGs, by ascending K."""
    return tuple(metric_name(measure, k) for measure in MEASURES for k in sorted(ks))


def parse_metric(metric: str) -> tuple[str, int]:
    """``"recall@20"`` -> ``("recall", 20)``; a clear error for anything the evaluator does not compute."""
    measure, _, k = metric.partition("@")
    if measure not in MEASURES or not k.isdigit() or int(k) <= 0:
        raise ValueError(
            f"unknown metric {metric!r}: expected <measure>@<K> with measure in {MEASURES}, e.g. recall@20"
        )
    return measure, int(k)


def short_metric(metric: str) -> str:
    """``"recall@20"`` -> ``"R@20"`` (table headers)."""
    measure, k = parse_metric(metric)
    return f"{_SHORT[measure]}@{k}"


def long_metric(metric: str) -> str:
    """``"recall@20"`` -> ``"Recall@20"`` (prose)."""
    measure, k = parse_metric(metric)
    return f"{_LONG[measure]}@{k}"


HEADLINE = tuple(metric_name(measure, max(CUTOFFS)) for measure in MEASURES)  # R@20 and N@20
