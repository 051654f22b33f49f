"""Loss terms and views that add-ons are built from, shared across backbones.

- :class:`TextAlignment`: contrastive alignment of graph representations with projected text embeddings
  (RLMRec-Con's profile alignment; IRLLRec's pairwise intent alignment).
- :class:`IntentView`: DCCF's intent-aware augmentation as a separate branch over another encoder's layer
  inputs (IRLLRec's "graph tower" intent representation on LightGCN).
- View names: the per-layer views an encoder (DCCF) or a component (:class:`IntentView`) puts in ``Encoded``.
"""

from __future__ import annotations

import torch
from torch import nn

from recrepro.graph import InteractionGraph
from recrepro.method import Encoded, MethodInputs
from recrepro.nn import Projector, info_nce, intent_aware

GRAPH = "graph"  # D^-1/2 A D^-1/2 E^(l)
INTENT = "intent"  # softmax(E^(l) W) W^T
GRAPH_AUGMENTED = "graph_augmented"  # E^(l) propagated over edges weighted by the graph view's cosines
INTENT_AUGMENTED = "intent_augmented"  # ... weighted by the intent view's cosines


def text_tensors(inputs: MethodInputs, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(user, item) text embeddings of ``kind`` ("profile" or "intent") as float32 tensors on the device."""
    text = inputs.extra("text")
    return (
        torch.from_numpy(getattr(text, f"user_{kind}")).to(inputs.device),
        torch.from_numpy(getattr(text, f"item_{kind}")).to(inputs.device),
    )


class TextAlignment(nn.Module):
    """RLMRec-Con's contrastive alignment of graph representations with projected text embeddings (also
    IRLLRec's pairwise intent alignment).

    weight / B x [NCE(h_u, f(t_u), f(all users' t)) + NCE(h_i+, f(t_i+), f(batch t_i+))
                  + NCE(h_i-, f(t_i-), f(batch t_i-))], with one projector f shared by users and items.

    As in the reference, user negatives are all users and item negatives are the batch's items of the same
    role (duplicates included). Repeated users and items are scored once, weighted by their multiplicity, and the
    items of both roles are projected once (the reference projects every item): the reference's values and
    gradients without projecting and scoring every repetition.
    """

    def __init__(
        self, user_text: torch.Tensor, item_text: torch.Tensor, out_dim: int, weight: float, temperature: float
    ) -> None:
        super().__init__()
        self.n_users = user_text.shape[0]
        self.register_buffer("text", torch.cat([user_text, item_text]), persistent=False)  # users first
        self.projector = Projector(user_text.shape[1], out_dim)
        self.weight, self.temperature = weight, temperature

    @property
    def user_text(self) -> torch.Tensor:
        return self.text[: self.n_users]

    @property
    def item_text(self) -> torch.Tensor:
        return self.text[self.n_users :]

    def forward(
        self,
        user_emb: torch.Tensor,
        item_emb: torch.Tensor,
        users: torch.Tensor,
        pos: torch.Tensor,
        neg: torch.Tensor,
        projected: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The weighted alignment loss of one batch; ``projected`` may pass f(text) of every user and item (users
        first) when the caller has it already."""
        projected_users = self.projector(self.user_text) if projected is None else projected[: self.n_users]
        distinct_users, user_counts = torch.unique(users, return_counts=True)
        total = info_nce(
            user_emb[distinct_users],
            projected_users[distinct_users],
            projected_users,
            self.temperature,
            anchor_counts=user_counts,
        )
        batch_items, rows = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        projected_items = (
            self.projector(self.item_text[batch_items]) if projected is None else projected[self.n_users + batch_items]
        )
        for role in rows.split(len(pos)):  # the positives, then the negatives
            distinct, counts = torch.unique(role, return_counts=True)  # rows of batch_items
            candidates = projected_items[distinct]
            total = total + info_nce(
                item_emb[batch_items[distinct]], candidates, candidates, self.temperature, counts, counts
            )
        return self.weight * total / len(users)


class IntentView(nn.Module):
    """The intent-augmented view over an encoder's layer inputs: per layer, E^(l) propagated over the graph with
    edge weights from the cosines of DCCF's intent-aware representations softmax(E^(l) W) W^T (prototypes
    W_u, W_i of K intents, Xavier-initialised)."""

    def __init__(self, graph: InteractionGraph, embedding_size: int, intents: int) -> None:
        super().__init__()
        self.graph = graph
        self.user_prototypes = nn.Parameter(nn.init.xavier_uniform_(torch.empty(embedding_size, intents)))
        self.item_prototypes = nn.Parameter(nn.init.xavier_uniform_(torch.empty(embedding_size, intents)))

    def forward(self, encoded: Encoded) -> list[torch.Tensor]:
        views = []
        for layer in encoded.layer_inputs:
            users, items = self.graph.split(layer)
            intents = torch.cat([intent_aware(users, self.user_prototypes), intent_aware(items, self.item_prototypes)])
            views.append(self.graph.adaptive_propagate(intents, layer))
        return views
