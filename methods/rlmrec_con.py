"""RLMRec-Con (Ren et al., WWW 2024) on the LightGCN and DCCF backbones, as in the reference's
``lightgcn_plus.py`` and ``dccf_plus.py``.

The backbone is trained as usual (BPR + L2 of all parameters + its own terms) plus a contrastive alignment of
the final user/item representations with their LLM profile embeddings, projected by one MLP
(D_p -> (D_p + d) // 2 -> d, LeakyReLU) shared by users and items; see :class:`recrepro.components.TextAlignment`.
"""

from __future__ import annotations

from pydantic import Field

from methods.dccf import DCCF
from methods.lightgcn import LIGHTGCN
from recrepro.components import TextAlignment, text_tensors
from recrepro.method import AddOn, MethodParams, graph_method
from recrepro.registry import register


class RLMRecCon(AddOn):
    """Contrastive alignment of the final representations with LLM profile embeddings."""

    requires = ("text",)

    class Params(MethodParams):
        kd_weight: float = Field(1e-2, ge=0, description="profile alignment weight")
        kd_temperature: float = Field(0.2, gt=0)

    def __init__(self, method) -> None:
        super().__init__(method)
        p = method.params
        self.graph = method.inputs.graph
        user_profile, item_profile = text_tensors(method.inputs, "profile")
        self.profile_alignment = TextAlignment(
            user_profile, item_profile, p.embedding_size, p.kd_weight, p.kd_temperature
        )

    def terms(self, encoded, state, users, pos, neg):
        user_emb, item_emb = self.graph.split(encoded.nodes)
        return {"kd": self.profile_alignment(user_emb, item_emb, users, pos, neg)}

    @staticmethod
    def search_space(trial) -> dict:
        return {
            "model.kd_weight": trial.suggest_float("kd_weight", 1e-4, 1e-1, log=True),
            "model.kd_temperature": trial.suggest_float("kd_temperature", 0.05, 1.0, log=True),
        }


register(
    "lightgcn-rlmrec-con",
    graph_method(
        LIGHTGCN,
        RLMRecCon,
        doc="LightGCN + RLMRec-Con: contrastive alignment with LLM profile embeddings.",
        defaults={"layers": 3, "reg_weight": 1e-7},
        reference={
            "amazon": {},
            "yelp": {},
            "steam": {"reg_weight": 1e-8, "kd_weight": 1e-3, "kd_temperature": 0.1},
            "movie": {"reg_weight": 1e-6, "kd_weight": 1e-3, "kd_temperature": 0.2},
        },
    ),
)

register(
    "dccf-rlmrec-con",
    graph_method(
        DCCF,
        RLMRecCon,
        doc="DCCF + RLMRec-Con: contrastive alignment with LLM profile embeddings.",
        defaults={"kd_temperature": 0.5},
        reference={
            "amazon": {**DCCF.reference["amazon"], "kd_temperature": 0.5},
            "yelp": {**DCCF.reference["yelp"], "kd_temperature": 0.2},
            "steam": {**DCCF.reference["steam"], "kd_temperature": 0.5},
            "movie": {**DCCF.reference["movie"], "kd_temperature": 0.1},
        },
    ),
)
