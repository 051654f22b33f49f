"""CI regression of reported metrics: compare run records with committed expected values and tolerances."""

from __future__ import annotations

import json
from pathlib import Path

from tabulate import tabulate

from recrepro.atomic import write_text
from recrepro.metrics import metric_names, short_metric
from recrepro.paths import shown


def collect(records: list[dict]) -> dict[str, dict[str, float]]:
    """``{"<variant>/<dataset>/seed<seed>": {metric: value}}`` of the test metrics."""
    return {
        f"{r['variant']}/{r['dataset']}/seed{r['seed']}": {m: r["metrics"]["test"][m] for m in metric_names()}
        for r in records
    }


def write_expected(path: Path, records: list[dict], tolerance: float) -> None:
    """Record the current metrics as the expected ones (a deliberate refresh)."""
    payload = {
        "tolerance_abs": tolerance,
        "note": "refresh on purpose with: recrepro regression update <runs> --expected <this file>",
        "runs": collect(records),
    }
    write_text(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")


def check(records: list[dict], expected_path: Path) -> tuple[bool, str]:
    """Whether every expected metric is reproduced within tolerance, and a readable report of the differences."""
    expected = json.loads(Path(expected_path).read_text())
    tolerance = expected["tolerance_abs"]
    actual = collect(records)
    rows, worst, ok = [], {}, True
    for run, metrics in sorted(expected["runs"].items()):
        if run not in actual:
            rows.append([run, "–", "–", "–", "–", "MISSING"])
            ok = False
            continue
        for metric, value in metrics.items():
            got = actual[run][metric]
            drift = got - value
            worst[run] = max(worst.get(run, 0.0), abs(drift))
            if abs(drift) > tolerance:
                ok = False
                rows.append([run, short_metric(metric), f"{value:.5f}", f"{got:.5f}", f"{drift:+.5f}", "DRIFT"])
    unexpected = sorted(set(actual) - set(expected["runs"]))
    rows += [[run, "–", "–", "–", "–", "NOT EXPECTED"] for run in unexpected]
    ok &= not unexpected
    if ok:
        table = tabulate(
            [[run, f"{drift:.5f}"] for run, drift in worst.items()],
            headers=["run", "largest absolute drift"],
            tablefmt="github",
            disable_numparse=True,
        )
        n_metrics = sum(len(m) for m in expected["runs"].values())
        return True, f"all {n_metrics} metrics within ±{tolerance} of {shown(expected_path)}\n\n{table}\n"
    table = tabulate(
        rows,
        headers=["run", "metric", "expected", "actual", "drift", "status"],
        tablefmt="github",
        disable_numparse=True,
    )
    return False, (
        f"regression check failed against {shown(expected_path)} (tolerance ±{tolerance}):\n\n{table}\n\n"
        "If the change is intended, refresh the expected values: "
        f"recrepro regression update <runs> --expected {shown(expected_path)}\n"
    )
