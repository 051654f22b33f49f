"""IRLLRec (Wang et al., SIGIR 2025, arXiv:2502.03307) on the LightGCN and DCCF backbones, as in the reference's
``lightgcn_int.py`` (HEAD) and ``dccf_int.py``.

Loss = BPR + reg x ||all parameters||^2 (the momentum teacher included) + the backbone's own terms
     + profile alignment   kd_weight x NCE(h, f_p(profile))                    (RLMRec-Con's term)
     + intent alignment    intent_weight x NCE(r, f_t(intent))                 ("IA - pairwise")
     + translation         w2 x InfoNCE(f_t(T) * (1 + e1), H * (1 + e2)), e ~ N(0, 1), t = 1, over all N nodes
     + matching (ITM)      w3 x [0.4 x (w2 x translation) + 0.6 x CE(softmax(f_t^m(T)), log softmax(f_t(T)))]

- r, the "graph tower" intent representation: the mean over layers of the intent-augmented view. DCCF computes
  that view itself; on LightGCN it comes from a separate branch (:class:`recrepro.components.IntentView`, its
  own prototypes W_u, W_i of K intents) that feeds only the intent alignment.
- f_p, f_t: two-layer projectors shared by users and items; f_t^m is an EMA copy of f_t (momentum 0.999), updated
  before every training step's loss (the trainer's ``before_step``), whose weights are re-drawn after copying (a
  reference quirk: only the biases start equal). The ITM softmax runs over the embedding dimensions.
- f_t^m(T) costs as much as f_t(T) (amazon: N x 3072 x 1552, 196 GFLOP a step), but its first layer is linear in
  weights that move by EMA, so T W_m^T follows the same recursion as W_m, with the student's own T W^T of the step:
  it is carried from step to step and computed directly at the first step after every mode change (each epoch and
  validation), which keeps resumed runs identical to uninterrupted ones. In between it differs from the direct
  product by rounding only.
- The translation term needs an N x N similarity; it is computed in row blocks (same value and gradient,
  O(block x N) memory).

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

from methods.dccf import DCCF
from methods.lightgcn import LIGHTGCN
from recrepro.components import INTENT_AUGMENTED, IntentView, TextAlignment, text_tensors
from recrepro.method import AddOn, MethodParams, graph_method
from recrepro.nn import ssl_con_loss
from recrepro.registry import register

MOMENTUM = 0.999  # hard-coded in the reference
ITM_TRANSLATION_SHARE = 0.4  # hard-coded in the reference: 0.4 x translation + 0.6 x distillation
TRANSLATION_BLOCK = 4096  # rows per block of the N x N translation similarity


class IRLLRec(AddOn):
    """Profile and intent alignment with LLM text, translation alignment and interaction-text matching."""

    requires = ("text",)

    class Params(MethodParams):
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

    def __init__(self, method) -> None:
        super().__init__(method)
        p = self.params = method.params
        self.graph = method.inputs.graph
        user_profile, item_profile = text_tensors(method.inputs, "profile")
        user_intent, item_intent = text_tensors(method.inputs, "intent")
        d = p.embedding_size
        self.profile_alignment = TextAlignment(user_profile, item_profile, d, p.kd_weight, p.kd_temperature)
        self.intent_alignment = TextAlignment(user_intent, item_intent, d, p.intent_weight, p.intent_temperature)
        self.teacher = None
        if p.itm_weight > 0:  # also when the ITM switch is off, so that ablation removes only its term
            self.teacher = copy.deepcopy(self.intent_alignment.projector)
            self.teacher.reset_weights()  # reference quirk: weights re-drawn after the copy, biases stay equal
            self.teacher.requires_grad_(False)
        self._teacher_product: torch.Tensor | None = None  # T W_m^T of the teacher's first layer, carried
        self._teacher_moved = False
        own_view = INTENT_AUGMENTED not in method.backbone.views
        self.intent_view = IntentView(self.graph, d, p.intents) if own_view else None

    def _uses_translation(self) -> bool:
        return self.params.translation_alignment and self.params.translation_weight > 0

    def _uses_itm(self) -> bool:
        return self.params.interaction_text_matching and self.params.itm_weight > 0

    @torch.no_grad()
    def before_step(self) -> None:
        """The momentum teacher's EMA update, before the loss that reads it (as the reference's cal_loss does)."""
        if self._uses_itm():
            for param, teacher in zip(self.intent_alignment.projector.parameters(), self.teacher.parameters()):
                teacher.mul_(MOMENTUM).add_(param, alpha=1 - MOMENTUM)
            self._teacher_moved = True

    def train(self, mode: bool = True):
        self._teacher_product = None  # recomputed directly at the next step: every epoch start and validation
        return super().train(mode)

    def _project_text(self) -> tuple[torch.Tensor, torch.Tensor]:
        """f_t(T) of all N nodes, and T W^T, its first layer's product without the bias."""
        first, activation, second = self.intent_alignment.projector
        product = self.intent_alignment.text @ first.weight.T
        return second(activation(product + first.bias)), product

    @torch.no_grad()
    def _teacher_output(self, product: torch.Tensor) -> torch.Tensor:
        """f_t^m(T), with T W_m^T carried: W_m <- m W_m + (1 - m) W makes T W_m^T <- m T W_m^T + (1 - m) T W^T,
        where ``product`` is T W^T for the weights W of this step's momentum update."""
        first, activation, second = self.teacher
        if self._teacher_product is None:
            self._teacher_product = self.intent_alignment.text @ first.weight.T
        elif self._teacher_moved:
            self._teacher_product.mul_(MOMENTUM).add_(product.detach(), alpha=1 - MOMENTUM)
        self._teacher_moved = False
        return second(activation(self._teacher_product + first.bias))

    def terms(self, encoded, state, users, pos, neg):
        p, graph = self.params, self.graph
        user_emb, item_emb = graph.split(encoded.nodes)
        terms = {"kd": self.profile_alignment(user_emb, item_emb, users, pos, neg)}
        # Z = f_t(T) of all N nodes, when translation or matching needs it (the intent alignment then reuses it)
        needs_all = self._uses_translation() or self._uses_itm()
        projected, product = self._project_text() if needs_all else (None, None)
        if p.intent_alignment:
            views = self.intent_view(encoded) if self.intent_view is not None else encoded.view(INTENT_AUGMENTED)
            intent_users, intent_items = graph.split(torch.stack(views).mean(0))
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
            teacher = F.softmax(self._teacher_output(product), dim=1)
            distillation = -(F.log_softmax(projected, dim=1) * teacher).sum(1).mean()
            terms["itm"] = p.itm_weight * (
                ITM_TRANSLATION_SHARE * translation + (1 - ITM_TRANSLATION_SHARE) * distillation
            )
        return terms

    @staticmethod
    def search_space(trial, translation_and_matching: bool = True) -> dict:
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


class IRLLRecOnDCCF(IRLLRec):
    """IRLLRec as the reference's dccf_int has it: no translation or matching term (weights 0, not searched)."""

    class Params(IRLLRec.Params):
        translation_weight: float = Field(0.0, ge=0, description="w2; the reference's dccf_int never uses it")
        itm_weight: float = Field(0.0, ge=0, description="w3; the reference's dccf_int never uses it")

    @staticmethod
    def search_space(trial) -> dict:
        return IRLLRec.search_space(trial, translation_and_matching=False)


PAPER = {"paper": {"*": {"translation_weight": 5e-4, "itm_weight": 1e-4}}}

register(
    "lightgcn-irllrec",
    graph_method(
        LIGHTGCN,
        IRLLRec,
        doc="LightGCN + IRLLRec: intent branch, text towers, pairwise and translation alignment, ITM.",
        defaults={"layers": 3, "reg_weight": 1e-7, "keep_rate": 1.0},
        reference={
            "amazon": {"intent_weight": 2e-2},
            "yelp": {"intent_weight": 1e-2},
            "movie": {"reg_weight": 1e-6, "kd_weight": 1e-3, "intent_weight": 3e-2},
        },
        presets=PAPER,
        notes=(
            "the reference's top-level lightgcn_int config has no kd_int_weight_2/3 (it would crash on a dataset "
            "without its own block); the released per-dataset value 1e-7 is used",
        ),
    ),
)

register(
    "dccf-irllrec",
    graph_method(
        DCCF,
        IRLLRecOnDCCF,
        doc="DCCF + IRLLRec: DCCF's intent views aligned with LLM intents, plus profile alignment.",
        defaults={"kd_temperature": 0.5},
        reference={
            "amazon": {
                **DCCF.reference["amazon"],
                "kd_temperature": 0.5,
                "intent_weight": 2e-2,
                "intent_temperature": 0.1,
            },
            "yelp": {**DCCF.reference["yelp"], "kd_temperature": 0.2, "intent_weight": 1e-2, "intent_temperature": 0.2},
            "movie": {
                **DCCF.reference["movie"],
                "kd_temperature": 0.1,
                "intent_weight": 5e-2,
                "intent_temperature": 0.2,
            },
        },
        presets=PAPER,
    ),
)
