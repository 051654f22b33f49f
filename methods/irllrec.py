"""IRLLRec (Wang et al., SIGIR 2025, arXiv:2502.03307) on the LightGCN and DCCF encoders, as in the reference's
``lightgcn_int.py`` (HEAD) and ``dccf_int.py``.

Loss = BPR + reg x ||all parameters||^2 (the momentum teacher included) + the encoder's own terms
     + profile alignment   kd_weight x NCE(h, f_p(profile))                    (RLMRec-Con's term)
     + intent alignment    intent_weight x NCE(r, f_t(intent))                 ("IA - pairwise")
     + translation         w2 x InfoNCE(f_t(T) * (1 + e1), H * (1 + e2)), e ~ N(0, 1), t = 1, over all N nodes
     + matching (ITM)      w3 x [0.4 x (w2 x translation) + 0.6 x CE(softmax(f_t^m(T)), log softmax(f_t(T)))]

- r, the "graph tower" intent representation: per layer, DCCF's intent-aware edge weights over the layer input
  (prototypes W_u, W_i, K intents), averaged over layers. On LightGCN it is a separate branch that feeds only
  the intent alignment; on DCCF it is the mean of DCCF's own intent-augmented views.
- f_p, f_t: two-layer projectors shared by users and items; f_t^m is an EMA copy of f_t (momentum 0.999,
  updated at every step before the loss), whose weights are re-drawn after copying (a reference quirk: only
  the biases start equal). The ITM softmax runs over the embedding dimensions.
- The translation term needs an N x N similarity; it is computed in row blocks with recomputation in the
  backward pass (same value and gradient, O(block x N) memory).

Faithful mode keeps the released weights w2 = w3 = 1e-7 (practically inactive); the ``paper`` preset uses the
earlier 5e-4 / 1e-4 so the mechanisms act. The switches ``intent_alignment``, ``translation_alignment`` and
``interaction_text_matching`` remove their terms for the ablations (turning off translation removes it from
the matching term too). On DCCF the reference has neither translation nor matching (weights 0 here).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from pydantic import Field

from methods.dccf import DCCF_REFERENCE, DCCFParams, build_dccf_encoder, dccf_search_space
from methods.lightgcn import LightGCNParams, build_lightgcn_encoder, lightgcn_search_space
from recrepro.method import Encoded, GraphEncoderMethod, MethodParams
from recrepro.nn import (
    TextAlignment,
    intent_aware,
    ssl_con_loss,
    text_tensors,
    weighted_propagate,
)
from recrepro.registry import register_method

MOMENTUM = 0.999  # hard-coded in the reference
ITM_TRANSLATION_SHARE = 0.4  # hard-coded in the reference: 0.4 x translation + 0.6 x distillation
TRANSLATION_BLOCK = 4096  # rows per block of the N x N translation similarity


class IntentParams(MethodParams):
    """IRLLRec's own hyperparameters (combined with each encoder's parameter class)."""

    intents: int = Field(128, gt=0, description="intent prototypes K of the intent branch")
    kd_weight: float = Field(1e-2, ge=0, description="profile alignment weight")
    kd_temperature: float = Field(0.2, gt=0)
    intent_weight: float = Field(1e-2, ge=0, description="pairwise intent alignment weight (kd_int_weight)")
    intent_temperature: float = Field(0.2, gt=0)
    translation_weight: float = Field(1e-7, ge=0, description="w2 (kd_int_weight_2)")
    itm_weight: float = Field(1e-7, ge=0, description="w3 (kd_int_weight_3)")
    intent_alignment: bool = True
    translation_alignment: bool = True
    interaction_text_matching: bool = True


class _IntentRepresentation(GraphEncoderMethod):
    """Any encoder + IRLLRec's text towers and alignment losses."""

    requires = ("text",)

    def __init__(self, inputs, params) -> None:
        super().__init__(inputs, params)
        d = params.embedding_size
        user_profile, item_profile = text_tensors(inputs, "profile")
        user_intent, item_intent = text_tensors(inputs, "intent")
        self.profile_alignment = TextAlignment(user_profile, item_profile, d, params.kd_weight, params.kd_temperature)
        self.intent_alignment = TextAlignment(
            user_intent, item_intent, d, params.intent_weight, params.intent_temperature
        )
        self.register_buffer("all_intents", torch.cat([user_intent, item_intent]), persistent=False)
        self.teacher = None
        if params.itm_weight > 0:  # also when the ITM switch is off, so that ablation removes only its term
            self.teacher = copy.deepcopy(self.intent_alignment.projector)
            self.teacher.reset_weights()  # reference quirk: weights re-drawn after the copy, biases stay equal
            self.teacher.requires_grad_(False)

    def _uses_translation(self) -> bool:
        p = self.params
        return p.translation_alignment and p.translation_weight > 0

    def _uses_itm(self) -> bool:
        p = self.params
        return p.interaction_text_matching and p.itm_weight > 0

    def intent_representation(self, encoded: Encoded) -> torch.Tensor:
        """r: the mean over layers of the intent-augmented views."""
        raise NotImplementedError

    @torch.no_grad()
    def _momentum_update(self) -> None:
        for param, teacher in zip(self.intent_alignment.projector.parameters(), self.teacher.parameters()):
            teacher.mul_(MOMENTUM).add_(param, alpha=1 - MOMENTUM)

    def extra_terms(self, encoded, state, users, pos, neg):
        p, graph = self.params, self.inputs.graph
        user_emb, item_emb = graph.split(encoded.nodes)
        terms = {"kd": self.profile_alignment(user_emb, item_emb, users, pos, neg)}
        # Z = f_t(T) of all N nodes, when translation or matching needs it (the intent alignment then reuses it)
        needs_all = self._uses_translation() or self._uses_itm()
        projected = self.intent_alignment.projector(self.all_intents) if needs_all else None
        if p.intent_alignment:
            intent_users, intent_items = graph.split(self.intent_representation(encoded))
            terms["kd_int"] = self.intent_alignment(intent_users, intent_items, users, pos, neg, projected)
        if projected is None:
            return terms
        translation = encoded.nodes.new_zeros(())
        if self._uses_translation():
            noisy_text = projected + projected * torch.randn_like(projected)
            noisy_graph = encoded.nodes + encoded.nodes * torch.randn_like(encoded.nodes)
            translation = p.translation_weight * ssl_con_loss(noisy_text, noisy_graph, 1.0, TRANSLATION_BLOCK)
            terms["translation"] = translation
        if self._uses_itm():
            self._momentum_update()
            with torch.no_grad():
                teacher = F.softmax(self.teacher(self.all_intents), dim=1)
            distillation = -(F.log_softmax(projected, dim=1) * teacher).sum(1).mean()
            terms["itm"] = p.itm_weight * (
                ITM_TRANSLATION_SHARE * translation + (1 - ITM_TRANSLATION_SHARE) * distillation
            )
        return terms

    @staticmethod
    def intent_search_space(trial, translation_and_matching: bool = True) -> dict:
        """Alignment weights and temperatures; the translation and matching weights only where the reference
        has those terms (on LightGCN), so that the reference configuration stays inside the space."""
        space = {
            "model.kd_weight": trial.suggest_float("kd_weight", 1e-4, 1e-1, log=True),
            "model.kd_temperature": trial.suggest_float("kd_temperature", 0.05, 1.0, log=True),
            "model.intent_weight": trial.suggest_float("intent_weight", 1e-5, 1e-1, log=True),
            "model.intent_temperature": trial.suggest_float("intent_temperature", 0.05, 1.0, log=True),
        }
        if translation_and_matching:
            space["model.translation_weight"] = trial.suggest_float("translation_weight", 1e-7, 1e-2, log=True)
            space["model.itm_weight"] = trial.suggest_float("itm_weight", 1e-7, 1e-2, log=True)
        return space


PAPER = {"paper": {"*": {"translation_weight": 5e-4, "itm_weight": 1e-4}}}


@register_method("lightgcn-irllrec")
class LightGCNIRLLRec(_IntentRepresentation):
    """LightGCN + IRLLRec: intent branch, text towers, pairwise and translation alignment, ITM."""

    class Params(IntentParams, LightGCNParams):
        layers: int = 3
        reg_weight: float = 1e-7
        keep_rate: float = Field(1.0, gt=0, le=1)

    reference = {
        "amazon": {"intent_weight": 2e-2},
        "yelp": {"intent_weight": 1e-2},
        "movie": {"reg_weight": 1e-6, "kd_weight": 1e-3, "intent_weight": 3e-2},
    }
    presets = PAPER
    top_level_notes = (
        "the reference's top-level lightgcn_int config has no kd_int_weight_2/3 (it would crash on a "
        "dataset without its own block); the released per-dataset value 1e-7 is used",
    )

    def __init__(self, inputs, params) -> None:
        super().__init__(inputs, params)
        d, k = params.embedding_size, params.intents
        self.user_prototypes = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(d, k)))
        self.item_prototypes = torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(d, k)))

    build_encoder = build_lightgcn_encoder

    def intent_representation(self, encoded: Encoded) -> torch.Tensor:
        graph = self.inputs.graph
        views = []
        for layer in encoded.layer_inputs:
            users, items = graph.split(layer)
            intents = torch.cat([intent_aware(users, self.user_prototypes), intent_aware(items, self.item_prototypes)])
            views.append(weighted_propagate(graph.graph, intents, layer))
        return torch.stack(views).mean(0)

    @staticmethod
    def search_space(trial) -> dict:
        return lightgcn_search_space(trial) | _IntentRepresentation.intent_search_space(trial)


@register_method("dccf-irllrec")
class DCCFIRLLRec(_IntentRepresentation):
    """DCCF + IRLLRec: DCCF's intent views aligned with LLM intents, plus profile alignment."""

    class Params(IntentParams, DCCFParams):
        kd_temperature: float = Field(0.5, gt=0)
        translation_weight: float = Field(0.0, ge=0, description="w2; the reference's dccf_int never uses it")
        itm_weight: float = Field(0.0, ge=0, description="w3; the reference's dccf_int never uses it")

    reference = {
        "amazon": {**DCCF_REFERENCE["amazon"], "kd_temperature": 0.5, "intent_weight": 2e-2, "intent_temperature": 0.1},
        "yelp": {**DCCF_REFERENCE["yelp"], "kd_temperature": 0.2, "intent_weight": 1e-2, "intent_temperature": 0.2},
        "movie": {**DCCF_REFERENCE["movie"], "kd_temperature": 0.1, "intent_weight": 5e-2, "intent_temperature": 0.2},
    }
    presets = PAPER
    build_encoder = build_dccf_encoder

    def intent_representation(self, encoded: Encoded) -> torch.Tensor:
        return torch.stack(encoded.views["iaa"]).mean(0)

    @staticmethod
    def search_space(trial) -> dict:
        return dccf_search_space(trial) | _IntentRepresentation.intent_search_space(
            trial, translation_and_matching=False
        )
