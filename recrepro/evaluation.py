"""Full-ranking evaluation, shared by every method: Recall@K and NDCG@K exactly as the reference computes them.

Protocol (IRLLRec/RLMRec ``trainer/metrics.py``):

- every item is a candidate except the user's **training** items (validation items stay candidates at test
  time and test items at validation time; ranked, they count as misses);
- the users evaluated are those with at least one target item; metrics are averaged over them;
- Recall@K = hits in the top K / number of target items (not min(K, |T|));
- NDCG@K uses binary gains and a 1/log2(rank+1) discount; the ideal DCG runs over min(K, |T|) hits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recrepro.metrics import CUTOFFS, MEASURES, metric_name


@dataclass
class EvalResult:
    """Per-user metrics of one evaluation, and their means."""

    users: np.ndarray  # evaluated user ids, ascending
    per_user: dict[str, np.ndarray]  # "recall@20" -> [n_users] array aligned with ``users``

    @property
    def means(self) -> dict[str, float]:
        return {name: float(values.mean()) if len(values) else 0.0 for name, values in self.per_user.items()}

    def __getitem__(self, metric: str) -> float:
        return self.means[metric]


def _csr_tensors(matrix: sp.csr_matrix, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    matrix = matrix.tocsr()
    matrix.sort_indices()
    return (
        torch.from_numpy(matrix.indptr.astype(np.int64)).to(device),
        torch.from_numpy(matrix.indices.astype(np.int64)).to(device),
    )


class Evaluator:
    """Ranks all items for each user with a target item, batched and vectorized.

    Args:
        train: ``n_users x n_items`` training matrix; its items are masked.
        target: ``n_users x n_items`` matrix of the items to retrieve (validation or test).
        ks: cut-offs.
        batch_size: users scored at once (the reference uses 1024).
    """

    def __init__(
        self,
        train: sp.csr_matrix,
        target: sp.csr_matrix,
        ks: tuple[int, ...] = CUTOFFS,
        batch_size: int = 1024,
        device: torch.device | str = "cpu",
    ) -> None:
        if train.shape != target.shape:
            raise ValueError(f"train {train.shape} and target {target.shape} matrices differ in shape")
        self.device = torch.device(device)
        self.n_items = train.shape[1]
        self.ks = tuple(sorted(ks))
        self.batch_size = batch_size
        target = (target != 0).astype(np.float32).tocsr()
        self.users = np.flatnonzero(np.diff(target.indptr)).astype(np.int64)
        self._train_ptr, self._train_idx = _csr_tensors((train != 0).astype(np.float32), self.device)
        self._target_ptr, self._target_idx = _csr_tensors(target, self.device)
        self._n_target = torch.from_numpy(np.diff(target.indptr)[self.users]).to(self.device)
        max_k = self.ks[-1]
        self._discount = 1.0 / torch.log2(torch.arange(2, max_k + 2, dtype=torch.float64, device=self.device))
        self._ideal = torch.cumsum(self._discount, 0)  # ideal DCG for 1..max_k hits

    def _rows(self, ptr: torch.Tensor, idx: torch.Tensor, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row position in batch, item) pairs of the given users' entries."""
        starts, counts = ptr[users], ptr[users + 1] - ptr[users]
        rows = torch.repeat_interleave(torch.arange(len(users), device=self.device), counts)
        offsets = torch.arange(int(counts.sum()), device=self.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        return rows, idx[torch.repeat_interleave(starts, counts) + offsets]

    @torch.no_grad()
    def evaluate(self, user_emb: torch.Tensor, item_emb: torch.Tensor) -> EvalResult:
        """Score every item as ``user_emb @ item_emb.T`` and compute the metrics."""
        max_k = self.ks[-1]
        per_user = {metric_name(m, k): np.empty(len(self.users)) for m in MEASURES for k in self.ks}
        item_emb = item_emb.to(self.device)
        for start in range(0, len(self.users), self.batch_size):
            users = torch.from_numpy(self.users[start : start + self.batch_size]).to(self.device)
            scores = user_emb[users].to(self.device) @ item_emb.T
            rows, items = self._rows(self._train_ptr, self._train_idx, users)
            scores[rows, items] = -torch.inf
            top = torch.topk(scores, k=min(max_k, self.n_items), dim=1).indices
            hits = self._hits(users, top)
            n_target = self._n_target[start : start + len(users)].double()
            for k in self.ks:
                hit_k = hits[:, :k]
                dcg = (hit_k * self._discount[: hit_k.shape[1]]).sum(1)
                idcg = self._ideal[torch.clamp(n_target, max=k).long() - 1]
                stop = start + len(users)
                per_user[metric_name("recall", k)][start:stop] = (hit_k.sum(1) / n_target).cpu().numpy()
                per_user[metric_name("ndcg", k)][start:stop] = (dcg / idcg).cpu().numpy()
        return EvalResult(users=self.users.copy(), per_user=per_user)

    def _hits(self, users: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
        """0/1 matrix: is ``top[b, r]`` a target item of ``users[b]``?"""
        rows, items = self._rows(self._target_ptr, self._target_idx, users)
        target_keys = rows * self.n_items + items  # sorted, since rows ascend and CSR indices are sorted
        top_keys = torch.arange(len(users), device=self.device).unsqueeze(1) * self.n_items + top
        return torch.isin(top_keys, target_keys).double()
