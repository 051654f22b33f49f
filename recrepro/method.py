"""What a method is: a ``torch.nn.Module`` with typed hyperparameters, reference defaults and a search space.

A method lives in one file under ``methods/``::

    @register_method("mymethod")
    class MyMethod(Method):
        class Params(MethodParams):          # hyperparameters; defaults = the reference's top-level config
            layers: int = 3
        reference = {"amazon": {"layers": 2}}  # the reference's per-dataset values (faithful mode)
        train_defaults = {"lr": 1e-4}        # optional overrides of TrainParams defaults
        presets = {"paper": {"*": {...}}}    # optional named alternatives to the reference values

        def __init__(self, inputs: MethodInputs, params: Params): ...
        def loss(self, users, pos, neg) -> dict[str, Tensor]: ...   # must contain "loss"
        def embeddings(self) -> tuple[Tensor, Tensor]: ...          # (user, item) for scoring
        @staticmethod
        def search_space(trial) -> dict: ...                        # {"model.x": ..., "train.lr": ...}

The trainer never needs to change when a method is added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from recrepro.data.canonical import InteractionData
from recrepro.graph import InteractionGraph


class MethodParams(BaseModel):
    """Base of every method's hyperparameters: strict (unknown keys are errors) and immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class MethodInputs:
    """Everything a method may read, built once per run by the trainer."""

    data: InteractionData
    graph: InteractionGraph
    device: torch.device
    extras: dict[str, Any] = field(default_factory=dict)  # side inputs named in Method.requires

    def extra(self, name: str) -> Any:
        if name not in self.extras:
            raise KeyError(f"input {name!r} was not loaded; declare it in the method's `requires`")
        return self.extras[name]


class Method(nn.Module):
    """Base class of all recommenders in the harness."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[MethodParams]] = MethodParams
    reference: ClassVar[dict[str, dict[str, Any]]] = {}
    train_defaults: ClassVar[dict[str, Any]] = {}
    train_reference: ClassVar[dict[str, dict[str, Any]]] = {}
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}  # preset -> dataset (or "*") -> values
    requires: ClassVar[tuple[str, ...]] = ()
    known_deviations: ClassVar[tuple[str, ...]] = ()  # always-present differences from the reference code
    top_level_notes: ClassVar[tuple[str, ...]] = ()  # notes for datasets the reference has no config block for

    def __init__(self, inputs: MethodInputs, params: MethodParams) -> None:
        super().__init__()
        self.inputs = inputs
        self.params = params

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms of one mini-batch of (user, positive item, negative item) triples; key ``loss`` is the
        total that is minimised, the other keys are logged."""
        raise NotImplementedError

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final (user, item) representations for full ranking; scores are their inner products."""
        raise NotImplementedError

    @staticmethod
    def search_space(trial: Any) -> dict[str, Any]:
        """Sample hyperparameters from an Optuna trial: ``{"model.<field>": v, "train.<field>": v}``."""
        raise NotImplementedError


@dataclass
class Encoded:
    """Output of a graph encoder for all nodes (users first, then items)."""

    nodes: torch.Tensor  # final representations, [N, d]
    layer_inputs: list[torch.Tensor]  # E^(0), ..., E^(L-1): the input of every propagation layer
    views: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # per-layer auxiliary views, if any


class GraphEncoderMethod(Method):
    """A method made of a graph encoder (``self.encoder``) plus loss terms; scores are inner products.

    The training loss is BPR + ``reg_weight`` x (squared L2 norm of every parameter) + the encoder's own
    auxiliary terms + :meth:`extra_terms`. Add-on methods (RLMRec, IRLLRec) subclass this once and are
    registered for each encoder they support.
    """

    def build_encoder(self) -> nn.Module:
        raise NotImplementedError

    def __init__(self, inputs: MethodInputs, params: MethodParams) -> None:
        super().__init__(inputs, params)
        self.encoder = self.build_encoder()

    def encode_for_training(self) -> tuple[Encoded, dict[str, Any]]:
        """The training forward pass, and any state the extra terms need (e.g. masked nodes)."""
        return self.encoder(), {}

    def extra_terms(
        self, encoded: Encoded, state: dict[str, Any], users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Weighted loss terms of an add-on (already multiplied by their weights)."""
        return {}

    def loss(self, users, pos, neg):
        from recrepro.nn import bpr_loss, l2_all_parameters

        encoded, state = self.encode_for_training()
        user_emb, item_emb = self.inputs.graph.split(encoded.nodes)
        terms = {
            "bpr": bpr_loss(user_emb[users], item_emb[pos], item_emb[neg]),
            "reg": self.params.reg_weight * l2_all_parameters(self),
        }
        terms.update(self.encoder.auxiliary_terms(encoded, users, pos))
        terms.update(self.extra_terms(encoded, state, users, pos, neg))
        terms["loss"] = sum(terms.values())
        return terms

    def embeddings(self):
        return self.inputs.graph.split(self.encoder().nodes)
