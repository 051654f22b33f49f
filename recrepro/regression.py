"""CI regression of reported metrics: compare run records with committed expected values and tolerances."""

from __future__ import annotations

import json
from pathlib import Path

from tabulate import tabulate

from recrepro.tables import METRIC_COLUMNS, short_metric


def collect(records: list[dict]) -> dict[str, dict[str, float]]:
    """``{"<variant>/<dataset>/seed<seed>": {metric: value}}`` of the test metrics."""
    return {
        f"{r['variant']}/{r['dataset']}/seed{r['seed']}": {m: r["metrics"]["test"][m] for m in METRIC_COLUMNS}
        for r in records
    }


def write_expected(path: Path, records: list[dict], tolerance: float) -> None:
    """Record the current metrics as the expected ones (a deliberate refresh)."""
    payload = {
        "tolerance_abs": tolerance,
        "note": "refresh on purpose with: recrepro regression update <runs> --expected <this file>",
        "runs": collect(records),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")


def check(records: list[dict], expected_path: Path) -> tuple[bool, str]:
    """Whether every expected metric is reproduced within tolerance, and a readable report of the differences."""
    expected = json.loads(Path(expected_path).read_text())
    tolerance = expected["tolerance_abs"]
    actual = collect(records)
    rows, ok = [], True
    for run, metrics in sorted(expected["runs"].items()):
        if run not in actual:
            rows.append([run, "–", "–", "–", "–", "MISSING"])
            ok = False
            continue
        for metric, value in metrics.items():
            got = actual[run][metric]
            drift = got - value
            status = "ok" if abs(drift) <= tolerance else "DRIFT"
            ok &= status == "ok"
            if status != "ok":
                rows.append([run, short_metric(metric), f"{value:.5f}", f"{got:.5f}", f"{drift:+.5f}", status])
    unexpected = sorted(set(actual) - set(expected["runs"]))
    rows += [[run, "–", "–", "–", "–", "NOT EXPECTED"] for run in unexpected]
    ok &= not unexpected
    if ok:
        return (
            True,
            f"all {sum(len(m) for m in expected['runs'].values())} metrics within ±{tolerance} of {expected_path}",
        )
    table = tabulate(
        rows,
        headers=["run", "metric", "expected", "actual", "drift", "status"],
        tablefmt="github",
        disable_numparse=True,
    )
    return False, (
        f"regression check failed against {expected_path} (tolerance ±{tolerance}):\n\n{table}\n\n"
        "If the change is intended, refresh the expected values: "
        f"recrepro regression update <runs> --expected {expected_path}"
    )
