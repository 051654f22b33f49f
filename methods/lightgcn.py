"""LightGCN (He et al., SIGIR 2020) as implemented in the IRLLRec/RLMRec reference (``lightgcn.py``).

- ID embeddings (Xavier-uniform), propagated over D^-1/2 A D^-1/2 for ``layers`` steps; the final
  representation is the **sum** over layers 0..L (not the mean).
- Edge dropout in training: every directed edge of the normalised adjacency is kept with probability
  ``keep_rate``, with no rescaling and no re-normalisation, redrawn at every forward pass.
- Loss: mean BPR (softplus of negative minus positive score) plus ``reg_weight`` times the squared L2 norm of
  **all** parameters (whole tables, not only the batch rows).

``LIGHTGCN`` is also the backbone the add-ons (RLMRec-Con, RLMRec-Gen, IRLLRec) are put on.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from recrepro.graph import InteractionGraph
from recrepro.method import Backbone, Encoded, MethodParams, graph_method
from recrepro.registry import register


class LightGCNEncoder(nn.Module):
    """ID embeddings propagated over the normalised interaction graph, summed over layers."""

    def __init__(self, graph: InteractionGraph, embedding_size: int, layers: int, keep_rate: float) -> None:
        super().__init__()
        self.graph, self.layers, self.keep_rate = graph, layers, keep_rate
        self.user_embeds = nn.Parameter(nn.init.xavier_uniform_(torch.empty(graph.n_users, embedding_size)))
        self.item_embeds = nn.Parameter(nn.init.xavier_uniform_(torch.empty(graph.n_items, embedding_size)))

    def initial(self) -> torch.Tensor:
        return torch.cat([self.user_embeds, self.item_embeds])

    def forward(self, initial: torch.Tensor | None = None) -> Encoded:
        adjacency = self.graph.drop_edges(self.keep_rate) if self.training else None
        layer = self.initial() if initial is None else initial
        inputs, total = [], layer
        for _ in range(self.layers):
            inputs.append(layer)
            layer = self.graph.propagate(layer, adjacency)
            total = total + layer
        return Encoded(nodes=total, layer_inputs=inputs)

    def auxiliary_terms(self, encoded: Encoded, users: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}


class LightGCNParams(MethodParams):
    embedding_size: int = Field(32, gt=0)
    layers: int = Field(2, ge=0, description="propagation steps (IRLLRec's lightgcn.yml top level: 2)")
    reg_weight: float = Field(1e-6, ge=0)
    keep_rate: float = Field(0.8, gt=0, le=1, description="edge keep probability in training")


def lightgcn_search_space(trial) -> dict:
    return {
        "model.layers": trial.suggest_int("layers", 1, 4),
        "model.reg_weight": trial.suggest_float("reg_weight", 1e-8, 1e-3, log=True),
        "model.keep_rate": trial.suggest_float("keep_rate", 0.5, 1.0),
        "train.lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
    }


LIGHTGCN = Backbone(
    name="lightgcn",
    params=LightGCNParams,
    encoder=lambda graph, p: LightGCNEncoder(graph, p.embedding_size, p.layers, p.keep_rate),
    reference={name: {"layers": 3} for name in ("amazon", "yelp", "movie")} | {"steam": {"layers": 2}},
    search_space=lightgcn_search_space,
)

register("lightgcn", graph_method(LIGHTGCN, doc="LightGCN: linear graph propagation of ID embeddings, BPR loss."))
