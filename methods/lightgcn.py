"""LightGCN (He et al., SIGIR 2020) as implemented in the IRLLRec/RLMRec reference (``lightgcn.py``).

- ID embeddings (Xavier-uniform), propagated over D^-1/2 A D^-1/2 for ``layers`` steps; the final
  representation is the **sum** over layers 0..L (not the mean).
- Edge dropout in training: every directed edge of the normalised adjacency is kept with probability
  ``keep_rate``, with no rescaling and no re-normalisation, redrawn at every forward pass.
- Loss: mean BPR (softplus of negative minus positive score) plus ``reg_weight`` times the squared L2 norm of
  **all** parameters (whole tables, not only the batch rows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from recrepro.method import Method, MethodInputs, MethodParams
from recrepro.registry import register_method


def bpr_loss(users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    """Mean of softplus(s(u, i-) - s(u, i+)), the reference's ``cal_bpr_loss`` divided by the batch size."""
    return F.softplus((users * neg).sum(-1) - (users * pos).sum(-1)).mean()


def l2_all_parameters(module: nn.Module) -> torch.Tensor:
    """Sum of squared Frobenius norms of every parameter (the reference's ``reg_params``)."""
    return sum(p.square().sum() for p in module.parameters())


@register_method("lightgcn")
class LightGCN(Method):
    """Graph collaborative filtering with linear propagation."""

    class Params(MethodParams):
        embedding_size: int = Field(32, gt=0)
        layers: int = Field(2, ge=0, description="propagation steps (IRLLRec top level: 2)")
        reg_weight: float = Field(1e-6, ge=0)
        keep_rate: float = Field(0.8, gt=0, le=1, description="edge keep probability in training")

    reference = {name: {"layers": 3} for name in ("amazon", "yelp", "movie")} | {"steam": {"layers": 2}}

    def __init__(self, inputs: MethodInputs, params: Params) -> None:
        super().__init__(inputs, params)
        graph = inputs.graph
        self.user_embeds = nn.Parameter(nn.init.xavier_uniform_(torch.empty(graph.n_users, params.embedding_size)))
        self.item_embeds = nn.Parameter(nn.init.xavier_uniform_(torch.empty(graph.n_items, params.embedding_size)))

    def propagate(self) -> torch.Tensor:
        """Sum over layers of the propagated node embeddings (edge dropout while training)."""
        graph = self.inputs.graph
        adjacency = graph.drop_edges(self.params.keep_rate) if self.training else graph.graph
        layer = torch.cat([self.user_embeds, self.item_embeds])
        total = layer
        for _ in range(self.params.layers):
            layer = graph.propagate(layer, adjacency)
            total = total + layer
        return total

    def loss(self, users, pos, neg):
        user_emb, item_emb = self.inputs.graph.split(self.propagate())
        bpr = bpr_loss(user_emb[users], item_emb[pos], item_emb[neg])
        reg = self.params.reg_weight * l2_all_parameters(self)
        return {"loss": bpr + reg, "bpr": bpr, "reg": reg}

    def embeddings(self):
        return self.inputs.graph.split(self.propagate())

    @staticmethod
    def search_space(trial):
        return {
            "model.layers": trial.suggest_int("layers", 1, 4),
            "model.reg_weight": trial.suggest_float("reg_weight", 1e-8, 1e-3, log=True),
            "model.keep_rate": trial.suggest_float("keep_rate", 0.5, 1.0),
            "train.lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        }
