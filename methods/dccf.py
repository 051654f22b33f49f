"""DCCF (Ren et al., SIGIR 2023) as implemented in the RLMRec/IRLLRec reference (``dccf.py``).

Per layer l, from the layer input E^(l):

1. graph view g = D^-1/2 A D^-1/2 E^(l);
2. intent view c = softmax(E^(l) W) W^T, separately for users (W_u) and items (W_i), K intents;
3. graph-based adaptive augmentation a = G(g) E^(l), where G(x) weights each edge by (1 + cos(x_h, x_t)) / 2
   and normalises each row to sum 1;
4. intent-based adaptive augmentation b = G(c) E^(l);
5. E^(l+1) = g + c + a + b + E^(l).

The output is the sum over layers 0..L. Loss: BPR + reg x ||all parameters||^2 + cl_weight x the six-term
InfoNCE (for users and for positive items of the batch, de-duplicated: g vs c, g vs a, g vs b, per layer, each
contrasting within the set); quirk kept: the item terms are also divided by the number of unique users.
No edge dropout, no independence regulariser.

``DCCF`` is also a backbone for the add-ons; its four views are named in :mod:`recrepro.components`.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from recrepro.components import GRAPH, GRAPH_AUGMENTED, INTENT, INTENT_AUGMENTED
from recrepro.graph import InteractionGraph
from recrepro.method import Backbone, Encoded, MethodParams, graph_method
from recrepro.nn import info_nce, intent_aware
from recrepro.registry import register


class DCCFEncoder(nn.Module):
    """DCCF's disentangled, adaptively augmented propagation; keeps every per-layer view."""

    def __init__(
        self,
        graph: InteractionGraph,
        embedding_size: int,
        layers: int,
        intents: int,
        cl_weight: float,
        cl_temperature: float,
    ) -> None:
        super().__init__()
        self.graph, self.layers = graph, layers
        self.cl_weight, self.cl_temperature = cl_weight, cl_temperature
        self.user_embeds = nn.Embedding(graph.n_users, embedding_size)
        self.item_embeds = nn.Embedding(graph.n_items, embedding_size)
        self.user_intent = nn.Parameter(nn.init.xavier_uniform_(torch.empty(embedding_size, intents)))
        self.item_intent = nn.Parameter(nn.init.xavier_uniform_(torch.empty(embedding_size, intents)))
        nn.init.xavier_uniform_(self.user_embeds.weight)
        nn.init.xavier_uniform_(self.item_embeds.weight)

    def initial(self) -> torch.Tensor:
        return torch.cat([self.user_embeds.weight, self.item_embeds.weight])

    def intent_view(self, layer: torch.Tensor) -> torch.Tensor:
        users, items = self.graph.split(layer)
        return torch.cat([intent_aware(users, self.user_intent), intent_aware(items, self.item_intent)])

    def forward(self, initial: torch.Tensor | None = None) -> Encoded:
        graph = self.graph
        layer = self.initial() if initial is None else initial
        inputs, total = [], layer
        views: dict[str, list[torch.Tensor]] = {GRAPH: [], INTENT: [], GRAPH_AUGMENTED: [], INTENT_AUGMENTED: []}
        for _ in range(self.layers):
            inputs.append(layer)
            gnn = graph.propagate(layer)
            intent = self.intent_view(layer)
            gaa = graph.adaptive_propagate(gnn, layer)
            iaa = graph.adaptive_propagate(intent, layer)
            for name, view in zip(views, (gnn, intent, gaa, iaa)):
                views[name].append(view)
            layer = gnn + intent + gaa + iaa + layer
            total = total + layer
        return Encoded(nodes=total, layer_inputs=inputs, views=views)

    def auxiliary_terms(self, encoded: Encoded, users: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        """DCCF's contrastive loss over the batch's unique users and unique positive items."""
        users, items = torch.unique(users), torch.unique(pos) + self.graph.n_users
        t = self.cl_temperature
        total = encoded.nodes.new_zeros(())
        for layer, graph_view in enumerate(encoded.view(GRAPH)):
            for nodes in (users, items):
                anchor = graph_view[nodes]
                for name in (INTENT, GRAPH_AUGMENTED, INTENT_AUGMENTED):
                    other = encoded.view(name)[layer][nodes]
                    total = total + info_nce(anchor, other, other, t) / len(users)
        return {"cl": self.cl_weight * total}


class DCCFParams(MethodParams):
    embedding_size: int = Field(32, gt=0)
    layers: int = Field(2, ge=0)
    intents: int = Field(128, gt=0, description="number of intent prototypes K (intent_num)")
    reg_weight: float = Field(1e-4, ge=0)
    cl_weight: float = Field(1e-3, ge=0)
    cl_temperature: float = Field(0.1, gt=0)


def dccf_search_space(trial) -> dict:
    return {
        "model.layers": trial.suggest_int("layers", 1, 3),
        "model.reg_weight": trial.suggest_float("reg_weight", 1e-6, 1e-2, log=True),
        "model.cl_weight": trial.suggest_float("cl_weight", 1e-4, 1e-1, log=True),
        "model.cl_temperature": trial.suggest_float("cl_temperature", 0.05, 1.0, log=True),
        "train.lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
    }


DCCF = Backbone(
    name="dccf",
    params=DCCFParams,
    encoder=lambda graph, p: DCCFEncoder(graph, p.embedding_size, p.layers, p.intents, p.cl_weight, p.cl_temperature),
    reference={
        "amazon": {"layers": 2, "reg_weight": 1e-4},
        "yelp": {"layers": 2, "reg_weight": 1e-4},
        "steam": {"layers": 3, "reg_weight": 1e-3},
        "movie": {"layers": 3, "reg_weight": 1e-3},
    },
    search_space=dccf_search_space,
    views=(GRAPH, INTENT, GRAPH_AUGMENTED, INTENT_AUGMENTED),
)

register(
    "dccf",
    graph_method(
        DCCF, doc="DCCF: disentangled intents with adaptive graph and intent augmentation, six-term contrastive loss."
    ),
)
