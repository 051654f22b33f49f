"""KGIN (Wang et al., WWW 2021) on DGL, as in the official code (huangtinglin/Knowledge_Graph_based_Intent_Network).

- Knowledge graph: every triple (h, r, t) also gets (t, r + R, h); relation ids are shifted by one (0 is
  "interact", which has no embedding). Items are entities 0..I-1.
- Intents: e_p = softmax(W_p) . relation embeddings (P intents, W: P x 2R).
- Per hop (L hops): entities take the mean over all their edges of e_t * e_r (all relations pooled); users
  take m_u = mean of their training items' hop-l embeddings, gated: m_u * (1 + sum_p beta(u, p) e_p) with
  beta = softmax over p of <e_u, latent_p> -- a separate free ``latent_emb``, not e_p (reference behaviour).
  Then message dropout (training), row-wise L2 normalisation; readout is the sum of hop 0..L.
- Node dropout in training (rate 0.5, redrawn every batch): int(E x rate) KG edges are kept, and each
  interaction is kept with probability ``rate`` and scaled by 1 / (1 - rate), without re-normalisation.
- Loss: mean BPR + l2 x (|u|^2 + |i+|^2 + |i-|^2) / 2 / B on the propagated batch rows + sim_regularity x the
  independence term over the rows of W (distance correlation by default).

The harness's protocol applies: model selection and early stopping on validation Recall@20 (the reference
selects on the test set), metrics at K in {5, 10, 20}; both are recorded as deviations.
"""

from __future__ import annotations

from typing import Literal

import dgl
import dgl.function as fn
import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from recrepro.method import Method, MethodParams
from recrepro.nn import bpr_loss, l2_normalize
from recrepro.registry import register_method


def distance_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dCor of two vectors treated as samples of scalars, with the reference's epsilons."""
    n = x.shape[0]
    x, y = x.unsqueeze(-1), y.unsqueeze(-1)
    zeros = torch.zeros(n, n, device=x.device)
    a = torch.sqrt(torch.maximum(x**2 - 2 * x @ x.T + (x**2).T, zeros) + 1e-8)
    b = torch.sqrt(torch.maximum(y**2 - 2 * y @ y.T + (y**2).T, zeros) + 1e-8)
    a = a - a.mean(0, keepdim=True) - a.mean(1, keepdim=True) + a.mean()
    b = b - b.mean(0, keepdim=True) - b.mean(1, keepdim=True) + b.mean()
    zero = torch.zeros((), device=x.device)
    dcov_ab = torch.sqrt(torch.maximum((a * b).sum() / n**2, zero) + 1e-8)
    dcov_aa = torch.sqrt(torch.maximum((a * a).sum() / n**2, zero) + 1e-8)
    dcov_bb = torch.sqrt(torch.maximum((b * b).sum() / n**2, zero) + 1e-8)
    return dcov_ab / torch.sqrt(dcov_aa * dcov_bb + 1e-8)


def independence(weights: torch.Tensor, kind: str) -> torch.Tensor:
    """Sum over intent pairs of dCor (``distance``) or squared cosine (``cosine``) of the rows of W."""
    total = weights.new_zeros(())
    for i in range(weights.shape[0]):
        for j in range(i + 1, weights.shape[0]):
            if kind == "distance":
                total = total + distance_correlation(weights[i], weights[j])
            else:
                total = total + F.cosine_similarity(weights[i], weights[j], dim=0) ** 2
    return total


def _sum_messages(graph: dgl.DGLGraph, features: torch.Tensor) -> torch.Tensor:
    """Sum of the source features over each destination's in-edges of a bipartite graph (copy_u + sum)."""
    with graph.local_scope():
        graph.srcdata["h"] = features
        graph.update_all(fn.copy_u("h", "m"), fn.sum("m", "h"))
        return graph.dstdata["h"]


@register_method("kgin")
class KGIN(Method):
    """KGIN: intents as attentive combinations of KG relations, relational path-aware aggregation."""

    requires = ("kg",)

    class Params(MethodParams):
        embedding_size: int = Field(64, gt=0)
        hops: int = Field(3, gt=0, description="context_hops")
        intents: int = Field(4, gt=1, description="n_factors")
        l2: float = Field(1e-5, ge=0)
        sim_regularity: float = Field(1e-4, ge=0)
        node_dropout_rate: float = Field(0.5, ge=0, lt=1, description="0 disables node dropout")
        mess_dropout_rate: float = Field(0.1, ge=0, lt=1, description="0 disables message dropout")
        independence: Literal["distance", "cosine"] = "distance"

    train_defaults = {"lr": 1e-4, "batch_size": 1024, "drop_last": True, "test_step": 10, "patience": 10}
    reference = {"last-fm": {}, "amazon-book": {"sim_regularity": 1e-5}, "alibaba-fashion": {}}
    known_deviations = (
        "model selection and early stopping on validation Recall@20 every test_step epochs (the reference selects "
        "on the test set at epochs 1, 9, 19, ...)",
        "random streams for node dropout and negative sampling differ from the reference's numpy ones",
    )

    def __init__(self, inputs, params) -> None:
        super().__init__(inputs, params)
        kg, data, device = inputs.extra("kg"), inputs.data, inputs.device
        if kg.n_entities < data.n_items:
            raise ValueError(
                f"the knowledge graph has {kg.n_entities} entities; items must be entities 0..{data.n_items - 1}"
            )
        triples = np.unique(kg.triples, axis=0)
        n_base = int(triples[:, 1].max()) + 1 if len(triples) else 1
        heads = np.concatenate([triples[:, 0], triples[:, 2]])
        tails = np.concatenate([triples[:, 2], triples[:, 0]])
        etypes = np.concatenate([triples[:, 1], triples[:, 1] + n_base])  # 0-based: row of the relation table
        self.n_users, self.n_items, self.n_entities = data.n_users, data.n_items, kg.n_entities
        # KG messages e_t * e_r, pooled by mean at the head h, are summed per (head, relation) "slot" first:
        # sum_edges e_t * e_r = sum_slots e_r * (sum_{t in slot} e_t), two unweighted sums instead of a weighted one
        slot_key = heads.astype(np.int64) * (2 * n_base) + etypes
        slot_keys, slot_of_edge = np.unique(slot_key, return_inverse=True)
        n_slots = len(slot_keys)
        self.kg_heads = torch.from_numpy(heads).to(device)
        self.kg_to_slots = dgl.heterograph(
            {("entity", "in", "slot"): (torch.from_numpy(tails), torch.from_numpy(slot_of_edge))},
            num_nodes_dict={"entity": kg.n_entities, "slot": n_slots},
            device=device,
        )
        self.slots_to_heads = dgl.heterograph(
            {("slot", "of", "entity"): (torch.arange(n_slots), torch.from_numpy(slot_keys // (2 * n_base)))},
            num_nodes_dict={"slot": n_slots, "entity": kg.n_entities},
            device=device,
        )
        self.slot_relation = torch.from_numpy(slot_keys % (2 * n_base)).to(device)
        self.kg_degree = torch.bincount(self.kg_heads, minlength=kg.n_entities).float().unsqueeze(1)
        # user side: the mean over a user's training items, as an unweighted sum times 1 / |N_u|
        self.interactions = dgl.heterograph(
            {("item", "rated_by", "user"): (torch.from_numpy(data.train[:, 1]), torch.from_numpy(data.train[:, 0]))},
            num_nodes_dict={"item": data.n_items, "user": data.n_users},
            device=device,
        )
        degree = np.bincount(data.train[:, 0], minlength=data.n_users).astype(np.float32)
        self.inverse_user_degree = torch.from_numpy(1.0 / np.maximum(degree, 1)).to(device).unsqueeze(1)

        d, n_relations = params.embedding_size, 2 * n_base
        init = nn.init.xavier_uniform_
        self.all_embed = nn.Parameter(init(torch.empty(self.n_users + self.n_entities, d)))
        self.latent_emb = nn.Parameter(init(torch.empty(params.intents, d)))
        self.relation_emb = nn.Parameter(init(torch.empty(n_relations, d)))
        self.intent_relation = nn.Parameter(init(torch.empty(params.intents, n_relations)))

    def _kept_kg_edges(self) -> torch.Tensor | None:
        """Node dropout on the KG: int(E x rate) edges are kept (the reference's rate is a keep fraction)."""
        rate = self.params.node_dropout_rate
        if not self.training or rate == 0:
            return None
        n_edges = self.kg_heads.shape[0]
        return torch.randperm(n_edges, device=self.kg_heads.device)[: int(n_edges * rate)]

    def _kept_interactions(self) -> torch.Tensor | None:
        """Node dropout on the interactions: each kept with probability ``rate`` (values scaled by 1/(1-rate))."""
        rate = self.params.node_dropout_rate
        if not self.training or rate == 0:
            return None
        keep = torch.floor(rate + torch.rand(self.interactions.num_edges(), 1, device=self.kg_heads.device))
        return keep.squeeze(1).nonzero().squeeze(1)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(user, entity) representations after ``hops`` hops, summed with hop 0."""
        p = self.params
        kept = self._kept_kg_edges()
        to_slots = self.kg_to_slots if kept is None else dgl.edge_subgraph(self.kg_to_slots, kept, relabel_nodes=False)
        degree = self.kg_degree
        if kept is not None:
            degree = torch.bincount(self.kg_heads[kept], minlength=self.n_entities).float().unsqueeze(1)
        inverse_degree = 1 / degree.clamp(min=1)  # the mean over a head's kept edges; 0 without edges
        kept_ui = self._kept_interactions()
        interactions = self.interactions
        user_scale = self.inverse_user_degree
        if kept_ui is not None:
            interactions = dgl.edge_subgraph(self.interactions, kept_ui, relabel_nodes=False)
            user_scale = user_scale / (1 - p.node_dropout_rate)
        # (embedding rather than indexing: its backward sums 10^4-10^6 rows into the small table many times faster)
        slot_relation = F.embedding(self.slot_relation, self.relation_emb)
        intents = torch.softmax(self.intent_relation, dim=-1) @ self.relation_emb  # e_p, [P, d]
        users, entities = self.all_embed[: self.n_users], self.all_embed[self.n_users :]
        user_sum, entity_sum = users, entities
        for _ in range(p.hops):
            slot_sums = _sum_messages(to_slots, entities)
            entity_agg = _sum_messages(self.slots_to_heads, slot_sums * slot_relation) * inverse_degree
            mean_items = _sum_messages(interactions, entities[: self.n_items]) * user_scale
            attention = torch.softmax(users @ self.latent_emb.T, dim=1)  # beta(u, p)
            user_agg = mean_items * (attention @ intents) + mean_items
            if self.training and p.mess_dropout_rate > 0:
                entity_agg = F.dropout(entity_agg, p.mess_dropout_rate)
                user_agg = F.dropout(user_agg, p.mess_dropout_rate)
            entities, users = l2_normalize(entity_agg), l2_normalize(user_agg)
            entity_sum, user_sum = entity_sum + entities, user_sum + users
        return user_sum, entity_sum

    def loss(self, users, pos, neg):
        p = self.params
        user_all, entity_all = self.propagate()
        u, i_pos, i_neg = user_all[users], entity_all[pos], entity_all[neg]
        terms = {
            "bpr": bpr_loss(u, i_pos, i_neg),
            "l2": p.l2 * (u.square().sum() + i_pos.square().sum() + i_neg.square().sum()) / 2 / len(users),
            "cor": p.sim_regularity * independence(self.intent_relation, p.independence),
        }
        terms["loss"] = sum(terms.values())
        return terms

    def embeddings(self):
        user_all, entity_all = self.propagate()
        return user_all, entity_all[: self.n_items]

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "model.hops": trial.suggest_int("hops", 1, 3),
            "model.intents": trial.suggest_int("intents", 2, 8),
            "model.l2": trial.suggest_float("l2", 1e-6, 1e-3, log=True),
            "model.sim_regularity": trial.suggest_float("sim_regularity", 1e-6, 1e-2, log=True),
            "model.node_dropout_rate": trial.suggest_float("node_dropout_rate", 0.0, 0.7),
            "train.lr": trial.suggest_float("lr", 1e-4, 1e-2, log=True),
        }
