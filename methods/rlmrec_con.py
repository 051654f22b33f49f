"""RLMRec-Con (Ren et al., WWW 2024) on the LightGCN and DCCF encoders, as in the reference's
``lightgcn_plus.py`` and ``dccf_plus.py``.

The encoder is trained as usual (BPR + L2 of all parameters + its own terms) plus a contrastive alignment
of the final user/item representations with their LLM profile embeddings, projected by one MLP
(D_p -> (D_p + d) // 2 -> d, LeakyReLU) shared by users and items; see :class:`recrepro.nn.TextAlignment`.
"""

from __future__ import annotations

from pydantic import Field

from methods.dccf import DCCF_REFERENCE, DCCFParams, build_dccf_encoder, dccf_search_space
from methods.lightgcn import LightGCNParams, build_lightgcn_encoder, lightgcn_search_space
from recrepro.method import GraphEncoderMethod
from recrepro.nn import TextAlignment, text_tensors
from recrepro.registry import register_method


class _ProfileAligned(GraphEncoderMethod):
    """Any encoder + RLMRec-Con's profile alignment."""

    requires = ("text",)

    def __init__(self, inputs, params) -> None:
        super().__init__(inputs, params)
        user_profile, item_profile = text_tensors(inputs, "profile")
        self.profile_alignment = TextAlignment(
            user_profile, item_profile, params.embedding_size, params.kd_weight, params.kd_temperature
        )

    def extra_terms(self, encoded, state, users, pos, neg):
        user_emb, item_emb = self.inputs.graph.split(encoded.nodes)
        return {"kd": self.profile_alignment(user_emb, item_emb, users, pos, neg)}

    @staticmethod
    def kd_search_space(trial) -> dict:
        return {
            "model.kd_weight": trial.suggest_float("kd_weight", 1e-4, 1e-1, log=True),
            "model.kd_temperature": trial.suggest_float("kd_temperature", 0.05, 1.0, log=True),
        }


@register_method("lightgcn-rlmrec-con")
class LightGCNRLMRecCon(_ProfileAligned):
    """LightGCN + RLMRec-Con: contrastive alignment with LLM profile embeddings."""

    class Params(LightGCNParams):
        layers: int = 3
        reg_weight: float = 1e-7
        kd_weight: float = Field(1e-2, ge=0)
        kd_temperature: float = Field(0.2, gt=0)

    reference = {
        "amazon": {},
        "yelp": {},
        "steam": {"reg_weight": 1e-8, "kd_weight": 1e-3, "kd_temperature": 0.1},
        "movie": {"reg_weight": 1e-6, "kd_weight": 1e-3, "kd_temperature": 0.2},
    }

    build_encoder = build_lightgcn_encoder

    @staticmethod
    def search_space(trial) -> dict:
        return lightgcn_search_space(trial) | _ProfileAligned.kd_search_space(trial)


@register_method("dccf-rlmrec-con")
class DCCFRLMRecCon(_ProfileAligned):
    """DCCF + RLMRec-Con: contrastive alignment with LLM profile embeddings."""

    class Params(DCCFParams):
        kd_weight: float = Field(1e-2, ge=0)
        kd_temperature: float = Field(0.5, gt=0)

    reference = {
        "amazon": {**DCCF_REFERENCE["amazon"], "kd_temperature": 0.5},
        "yelp": {**DCCF_REFERENCE["yelp"], "kd_temperature": 0.2},
        "steam": {**DCCF_REFERENCE["steam"], "kd_temperature": 0.5},
        "movie": {**DCCF_REFERENCE["movie"], "kd_temperature": 0.1},
    }
    build_encoder = build_dccf_encoder

    @staticmethod
    def search_space(trial) -> dict:
        return dccf_search_space(trial) | _ProfileAligned.kd_search_space(trial)
