"""RLMRec-Gen (Ren et al., WWW 2024) on the LightGCN and DCCF backbones, as in the reference's
``lightgcn_gene.py`` and ``dccf_gene.py``.

Every step, max(floor(N x mask_ratio), 1) nodes (users and items jointly, uniformly without replacement) have
their initial embedding replaced by one learnable mask token (zeros at start); the encoder runs on the masked
input (edge dropout included for LightGCN) and BPR is computed on that pass. An MLP (d -> (D_p + d) // 2 -> D_p)
reconstructs the masked nodes' LLM profile embeddings from their final representations, scored by InfoNCE
(cosine, ``re_temperature``, mean over masked nodes; negatives: the other masked nodes' profiles).
Evaluation uses the unmasked encoder.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from methods.dccf import DCCF
from methods.lightgcn import LIGHTGCN
from recrepro.components import text_tensors
from recrepro.method import AddOn, MethodParams, graph_method
from recrepro.nn import Projector, ssl_con_loss
from recrepro.registry import register


class RLMRecGen(AddOn):
    """Masked reconstruction of LLM profile embeddings from the final representations."""

    requires = ("text",)

    class Params(MethodParams):
        mask_ratio: float = Field(0.1, gt=0, lt=1)
        recon_weight: float = Field(0.1, ge=0)
        re_temperature: float = Field(0.2, gt=0)

    def __init__(self, method) -> None:
        super().__init__(method)
        self.params = method.params
        user_profile, item_profile = text_tensors(method.inputs, "profile")
        self.register_buffer("profiles", torch.cat([user_profile, item_profile]), persistent=False)
        self.mask_token = nn.Parameter(torch.zeros(1, method.params.embedding_size))
        self.reconstructor = Projector(method.params.embedding_size, self.profiles.shape[1])

    def encode(self, encoder):
        initial = encoder.initial()
        n_masked = max(int(initial.shape[0] * self.params.mask_ratio), 1)
        seeds = torch.randperm(initial.shape[0], device=initial.device)[:n_masked]
        keep = torch.ones(initial.shape[0], 1, device=initial.device)
        keep[seeds] = 0
        masked = initial * keep + self.mask_token * (1 - keep)
        return encoder(masked), {"seeds": seeds}

    def terms(self, encoded, state, users, pos, neg):
        seeds = state["seeds"]
        reconstructed = self.reconstructor(encoded.nodes[seeds])
        loss = ssl_con_loss(reconstructed, self.profiles[seeds], self.params.re_temperature)
        return {"recon": self.params.recon_weight * loss}

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "model.mask_ratio": trial.suggest_float("mask_ratio", 0.02, 0.3, log=True),
            "model.recon_weight": trial.suggest_float("recon_weight", 1e-3, 1.0, log=True),
            "model.re_temperature": trial.suggest_float("re_temperature", 0.05, 1.0, log=True),
        }


register(
    "lightgcn-rlmrec-gen",
    graph_method(
        LIGHTGCN,
        RLMRecGen,
        doc="LightGCN + RLMRec-Gen: masked reconstruction of LLM profile embeddings.",
        defaults={"layers": 3, "reg_weight": 1e-7},
        reference={
            "amazon": {"layers": 2, "mask_ratio": 0.15, "recon_weight": 0.1, "re_temperature": 0.5},
            "yelp": {"layers": 2, "mask_ratio": 0.05, "recon_weight": 0.01, "re_temperature": 0.1},
            "steam": {"layers": 2, "reg_weight": 1e-6, "mask_ratio": 0.15, "recon_weight": 0.1, "re_temperature": 0.5},
            "movie": {"layers": 3, "reg_weight": 1e-6, "mask_ratio": 0.15, "recon_weight": 0.05, "re_temperature": 0.2},
        },
    ),
)

register(
    "dccf-rlmrec-gen",
    graph_method(
        DCCF,
        RLMRecGen,
        doc="DCCF + RLMRec-Gen: masked reconstruction of LLM profile embeddings.",
        defaults={"re_temperature": 0.5},
        reference={
            "amazon": {**DCCF.reference["amazon"], "mask_ratio": 0.05, "recon_weight": 0.1, "re_temperature": 0.2},
            "yelp": {**DCCF.reference["yelp"], "mask_ratio": 0.05, "recon_weight": 0.01, "re_temperature": 0.1},
            "steam": {**DCCF.reference["steam"], "mask_ratio": 0.1, "recon_weight": 0.01, "re_temperature": 0.2},
            "movie": {**DCCF.reference["movie"], "mask_ratio": 0.1, "recon_weight": 0.01, "re_temperature": 0.2},
        },
    ),
)
