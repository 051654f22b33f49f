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
    known_deviations: ClassVar[tuple[str, ...]] = ()

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
