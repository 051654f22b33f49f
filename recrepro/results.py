"""Run records on disk: one JSON file per run (metrics, config, provenance) and a per-user ``.npz`` beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from recrepro.provenance import provenance
from recrepro.trainer import RunOutcome


def per_user_path(record_path: Path) -> Path:
    return record_path.with_suffix(".users.npz")


def write_run(outcome: RunOutcome, path: Path) -> None:
    """Write the run record (with provenance and history) and its per-user metrics, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"val_users": outcome.val.users}
    arrays.update({f"val_{name}": values for name, values in outcome.val.per_user.items()})
    if outcome.test is not None:
        arrays["test_users"] = outcome.test.users
        arrays.update({f"test_{name}": values for name, values in outcome.test.per_user.items()})
    users_tmp = path.with_suffix(".users.tmp.npz")
    np.savez_compressed(users_tmp, **arrays)
    users_tmp.replace(per_user_path(path))
    record = {**outcome.record, "history": outcome.history, "provenance": provenance()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=_jsonable) + "\n")
    tmp.replace(path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def read_run(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def read_per_user(path: Path, part: str = "test") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(users, {metric: values}) of one run's ``part`` ("val" or "test")."""
    with np.load(per_user_path(Path(path))) as npz:
        prefix = f"{part}_"
        users = npz[f"{part}_users"]
        metrics = {k[len(prefix) :]: npz[k] for k in npz.files if k.startswith(prefix) and k != f"{part}_users"}
    return users, metrics
