"""The harness's own on-disk dataset format, read by every method.

A canonical dataset folder holds:

- ``interactions.npz``: ``train``, ``val``, ``test`` as int64 ``[n, 2]`` arrays of (user, item) pairs, sorted
  and unique, plus ``n_users`` and ``n_items``. Ids are contiguous from 0.
- ``meta.json``: the card name, statistics, conversion parameters, source checksums and the SHA-256 of
  ``interactions.npz`` (the dataset checksum every run record carries).
- optional side files written by the converter (``items.jsonl``, ``users.jsonl``, ``train_ratings.npz``,
  ``kg.npz``), each listed with its checksum in ``meta.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recrepro.data.cards import DatasetCard

FORMAT_VERSION = 1
PARTS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset is missing, malformed, or does not match its card."""


def normalize_pairs(pairs: np.ndarray) -> np.ndarray:
    """Return (user, item) pairs as a sorted, duplicate-free int64 ``[n, 2]`` array."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return np.unique(pairs, axis=0)


@dataclass
class InteractionData:
    """A user-item dataset split into train, validation and test interactions."""

    name: str
    n_users: int
    n_items: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    checksum: str = ""
    directory: Path | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return self.n_users + self.n_items

    def part(self, name: str) -> np.ndarray:
        if name not in PARTS:
            raise KeyError(f"unknown split part {name!r}; expected one of {PARTS}")
        return getattr(self, name)

    def csr(self, name: str) -> sp.csr_matrix:
        """The part as a binary ``n_users x n_items`` CSR matrix."""
        pairs = self.part(name)
        data = np.ones(len(pairs), dtype=np.float32)
        return sp.csr_matrix((data, (pairs[:, 0], pairs[:, 1])), shape=(self.n_users, self.n_items))

    @cached_property
    def train_csr(self) -> sp.csr_matrix:
        return self.csr("train")

    def stats(self) -> dict[str, int]:
        """Counts of users, items, interactions per part, and distinct users / items with training data."""
        return {
            "users": self.n_users,
            "items": self.n_items,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
            "users_in_train": len(np.unique(self.train[:, 0])),
            "items_in_train": len(np.unique(self.train[:, 1])),
        }

    def side_file(self, name: str) -> Path:
        """Path of a side file declared in ``meta.json``; raises if the converter wrote none."""
        if self.directory is None or name not in self.meta.get("side_files", {}):
            raise DatasetError(f"dataset {self.name!r} has no side file {name!r}")
        return self.directory / name


def check_stats(card: DatasetCard, data: InteractionData) -> None:
    """Hard error unless the dataset's statistics equal the card's (the optional ones where the card has them)."""
    actual = data.stats()
    declared = card.stats.model_dump(exclude_none=True)
    diffs = [
        f"{key}: card {value:,} vs data {actual[key]:,}" for key, value in declared.items() if actual[key] != value
    ]
    if diffs:
        raise DatasetError(f"dataset {card.name!r} does not match its card: " + "; ".join(diffs))


def check_split(data: InteractionData) -> None:
    """Users and items exist, no part is empty, ids are in range, and the three parts are pairwise disjoint."""
    if data.n_users <= 0 or data.n_items <= 0:
        raise DatasetError(f"{data.name}: {data.n_users} users x {data.n_items} items; a dataset needs both")
    empty = [part for part in PARTS if len(data.part(part)) == 0]
    if empty:
        raise DatasetError(f"{data.name}: the {' and '.join(empty)} split(s) hold no interaction")
    for part in PARTS:
        pairs = data.part(part)
        if len(pairs) and (pairs.min() < 0 or pairs[:, 0].max() >= data.n_users or pairs[:, 1].max() >= data.n_items):
            raise DatasetError(f"{data.name}: {part} holds ids outside {data.n_users} users x {data.n_items} items")
    keys = {part: data.part(part)[:, 0] * data.n_items + data.part(part)[:, 1] for part in PARTS}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        overlap = np.intersect1d(keys[a], keys[b]).size
        if overlap:
            raise DatasetError(f"{data.name}: {overlap} interactions are in both {a} and {b}")


def write_interactions(path: Path, data: InteractionData) -> None:
    np.savez(
        path,
        train=data.train,
        val=data.val,
        test=data.test,
        n_users=np.int64(data.n_users),
        n_items=np.int64(data.n_items),
    )


def load_canonical(directory: Path, card: DatasetCard | None = None) -> InteractionData:
    """Load a canonical dataset folder, verify its checksum and, given a card, its statistics."""
    from recrepro.data.fetch import sha256_file  # local import keeps this module free of network deps

    meta_path = directory / "meta.json"
    if not meta_path.is_file():
        raise DatasetError(f"{directory} is not a prepared dataset (no meta.json); run the prepare step first")
    meta = json.loads(meta_path.read_text())
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{directory}: format version {meta.get('format_version')}, expected {FORMAT_VERSION}; "
            "prepare the dataset again"
        )
    path = directory / "interactions.npz"
    checksum = sha256_file(path)
    if checksum != meta["interactions_sha256"]:
        raise DatasetError(f"{path} changed since it was prepared (checksum mismatch); prepare it again")
    with np.load(path) as npz:
        data = InteractionData(
            name=meta["name"],
            n_users=int(npz["n_users"]),
            n_items=int(npz["n_items"]),
            train=npz["train"],
            val=npz["val"],
            test=npz["test"],
            checksum=checksum,
            directory=directory,
            meta=meta,
        )
    if card is not None:
        check_stats(card, data)
    return data
