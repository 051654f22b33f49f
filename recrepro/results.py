"""Run records on disk: one JSON file per run (metrics, config, provenance) and a per-user ``.npz`` beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recrepro.atomic import atomic_write
from recrepro.provenance import provenance

if TYPE_CHECKING:
    from recrepro.trainer import RunOutcome


def per_user_path(record_path: Path) -> Path:
    return record_path.with_suffix(".users.npz")


def write_run(outcome: RunOutcome, path: Path) -> None:
    """Write the run record (with provenance and history) and its per-user metrics, each atomically."""
    arrays: dict[str, np.ndarray] = {"val_users": outcome.val.users}
    arrays.update({f"val_{name}": values for name, values in outcome.val.per_user.items()})
    if outcome.test is not None:
        arrays["test_users"] = outcome.test.users
        arrays.update({f"test_{name}": values for name, values in outcome.test.per_user.items()})
    with atomic_write(per_user_path(path), binary=True) as handle:
        np.savez_compressed(handle, **arrays)
    record = {**outcome.record, "history": outcome.history, "provenance": provenance()}
    with atomic_write(path) as handle:
        handle.write(json.dumps(record, indent=1, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def read_per_user(path: Path, part: str = "test") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(users, {metric: values}) of one run's ``part`` ("val" or "test")."""
    with np.load(per_user_path(Path(path))) as npz:
        prefix = f"{part}_"
        users = npz[f"{part}_users"]
        metrics = {k[len(prefix) :]: npz[k] for k in npz.files if k.startswith(prefix) and k != f"{part}_users"}
    return users, metrics
