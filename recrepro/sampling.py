"""Negative sampling for pairwise training, vectorized."""

from __future__ import annotations

import numpy as np

from recrepro.data.canonical import InteractionData


class NegativeSampler:
    """One uniformly random negative item per training pair, excluding the user's training items.

    As in the reference, only training items are excluded: validation and test items can be drawn.
    Rejected draws are redrawn until every pair has a valid negative.
    """

    def __init__(self, data: InteractionData) -> None:
        self.n_items = data.n_items
        self.users = data.train[:, 0].astype(np.int64)
        self.items = data.train[:, 1].astype(np.int64)
        self._train_keys = np.sort(self.users * self.n_items + self.items)
        full = np.bincount(self.users, minlength=data.n_users) >= self.n_items
        if full.any():
            raise ValueError(f"{int(full.sum())} users interacted with every item; no negative exists for them")

    def _is_train(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        keys = users * self.n_items + items
        pos = np.searchsorted(self._train_keys, keys)
        pos[pos == len(self._train_keys)] = 0
        return self._train_keys[pos] == keys

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Negatives aligned with the training pairs."""
        negatives = rng.integers(0, self.n_items, size=len(self.users))
        todo = np.flatnonzero(self._is_train(self.users, negatives))
        while todo.size:
            negatives[todo] = rng.integers(0, self.n_items, size=todo.size)
            todo = todo[self._is_train(self.users[todo], negatives[todo])]
        return negatives
