"""Side inputs a method can declare in ``Method.requires``, loaded from the canonical dataset folder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recrepro.data.canonical import DatasetError, InteractionData

LOADERS: dict[str, Callable[[InteractionData], Any]] = {}


def side_input(name: str) -> Callable:
    def wrap(fn: Callable[[InteractionData], Any]) -> Callable[[InteractionData], Any]:
        LOADERS[name] = fn
        return fn

    return wrap


@dataclass(frozen=True)
class KnowledgeGraph:
    """Triples over entities ``0..n_entities-1`` (items are entities ``0..n_items-1``) and named relations."""

    triples: np.ndarray  # [n, 3] int64: head, relation, tail
    relations: np.ndarray  # relation names
    n_entities: int


@side_input("kg")
def load_kg(data: InteractionData) -> KnowledgeGraph:
    with np.load(data.side_file("kg.npz")) as npz:
        return KnowledgeGraph(triples=npz["triples"], relations=npz["relations"], n_entities=int(npz["n_entities"]))


def load_extra(name: str, data: InteractionData) -> Any:
    """Load side input ``name`` of ``data``; a clear error names what is missing and how to get it."""
    if name not in LOADERS:
        raise DatasetError(f"unknown side input {name!r}; known: {sorted(LOADERS)}")
    return LOADERS[name](data)
