"""What a method is: a ``torch.nn.Module`` with typed hyperparameters, reference defaults and a search space.

A standalone method lives in one file under ``methods/``::

    @register_method("mymethod")
    class MyMethod(Method):
        requires = ("kg",)                   # side inputs it reads (recrepro.inputs)
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

Methods made of a graph encoder and loss terms are composed instead: a :class:`Backbone` (LightGCN, DCCF) plus
an :class:`AddOn` (RLMRec-Con, RLMRec-Gen, IRLLRec), combined by :func:`graph_method`. The trainer never needs
to change when a method, a backbone or an add-on is added.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, create_model
from pydantic.fields import FieldInfo
from torch import nn

from recrepro.data.canonical import InteractionData
from recrepro.graph import InteractionGraph
from recrepro.nn import bpr_loss, l2_all_parameters


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
    reference: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    train_defaults: ClassVar[dict[str, Any]] = {}
    presets: ClassVar[dict[str, dict[str, dict[str, Any]]]] = {}  # preset -> dataset (or "*") -> values
    requires: ClassVar[tuple[str, ...]] = ()  # side inputs it reads (recrepro.inputs)
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

    def before_step(self) -> None:
        """Called by the trainer before each training step's loss (IRLLRec updates its momentum teacher here)."""

    @staticmethod
    def search_space(trial: Any) -> dict[str, Any]:
        """Sample hyperparameters from an Optuna trial: ``{"model.<field>": v, "train.<field>": v}``."""
        raise NotImplementedError


@dataclass
class Encoded:
    """Output of a graph encoder for all nodes (users first, then items)."""

    nodes: torch.Tensor  # final representations, [N, d]
    layer_inputs: list[torch.Tensor]  # E^(0), ..., E^(L-1): the input of every propagation layer
    views: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # per-layer named views, if any

    def view(self, name: str) -> list[torch.Tensor]:
        """The per-layer view ``name``; a clear error if neither the encoder nor an add-on produced it."""
        if name not in self.views:
            raise KeyError(f"the encoder produced no {name!r} view (it has {sorted(self.views)})")
        return self.views[name]


@dataclass(frozen=True)
class Backbone:
    """A graph encoder that add-ons can be put on.

    ``encoder(graph, params)`` builds the ``nn.Module`` whose ``forward(initial=None)`` returns :class:`Encoded`
    and whose ``auxiliary_terms(encoded, users, pos)`` returns its own loss terms; ``params`` are its
    hyperparameters with the reference's top-level values, ``reference`` its per-dataset values.
    """

    name: str
    params: type[MethodParams]
    encoder: Callable[[InteractionGraph, Any], nn.Module]
    reference: Mapping[str, Mapping[str, Any]]
    search_space: Callable[[Any], dict[str, Any]]
    views: tuple[str, ...] = ()  # the named per-layer views its Encoded carries


class AddOn(nn.Module):
    """Loss terms put on a backbone's training loss (RLMRec-Con, RLMRec-Gen, IRLLRec).

    Subclasses declare their hyperparameters (``Params``), the side inputs they read (``requires``) and their
    search space, and build their parts in ``__init__(method)``.
    """

    Params: ClassVar[type[MethodParams]] = MethodParams
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, method: GraphMethod) -> None:
        super().__init__()

    def encode(self, encoder: nn.Module) -> tuple[Encoded, dict[str, Any]]:
        """The training forward pass, and any state :meth:`terms` needs (RLMRec-Gen masks nodes here)."""
        return encoder(), {}

    def terms(
        self, encoded: Encoded, state: dict[str, Any], users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Weighted loss terms (already multiplied by their weights)."""
        raise NotImplementedError

    def before_step(self) -> None:
        """Called before each training step's loss."""

    @staticmethod
    def search_space(trial: Any) -> dict[str, Any]:
        return {}


class GraphMethod(Method):
    """A backbone's encoder trained with BPR + ``reg_weight`` x (squared L2 norm of every parameter) + the
    encoder's own terms + an add-on's terms; scores are inner products of the final representations."""

    backbone: ClassVar[Backbone]
    addon_class: ClassVar[type[AddOn] | None] = None

    def __init__(self, inputs: MethodInputs, params: MethodParams) -> None:
        super().__init__(inputs, params)
        self.encoder = self.backbone.encoder(inputs.graph, params)
        self.addon = self.addon_class(self) if self.addon_class is not None else None

    def loss(self, users, pos, neg):
        encoded, state = self.addon.encode(self.encoder) if self.addon is not None else (self.encoder(), {})
        user_emb, item_emb = self.inputs.graph.split(encoded.nodes)
        terms = {
            "bpr": bpr_loss(user_emb[users], item_emb[pos], item_emb[neg]),
            "reg": self.params.reg_weight * l2_all_parameters(self),
        }
        terms.update(self.encoder.auxiliary_terms(encoded, users, pos))
        if self.addon is not None:
            terms.update(self.addon.terms(encoded, state, users, pos, neg))
        terms["loss"] = sum(terms.values())
        return terms

    def before_step(self) -> None:
        if self.addon is not None:
            self.addon.before_step()

    def embeddings(self):
        return self.inputs.graph.split(self.encoder().nodes)


def _with_defaults(base: type[MethodParams], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Field definitions that change only the defaults of ``base``'s fields (their constraints are kept)."""
    fields = {}
    for name, value in defaults.items():
        if name not in base.model_fields:
            raise ValueError(f"{base.__name__} has no hyperparameter {name!r} to give a default")
        info = base.model_fields[name]
        fields[name] = (info.annotation, FieldInfo.merge_field_infos(info, default=value))
    return fields


def graph_method(
    backbone: Backbone,
    addon: type[AddOn] | None = None,
    *,
    doc: str,
    defaults: Mapping[str, Any] | None = None,
    reference: Mapping[str, Mapping[str, Any]] | None = None,
    presets: dict[str, dict[str, dict[str, Any]]] | None = None,
    notes: tuple[str, ...] = (),
) -> type[GraphMethod]:
    """The method ``backbone`` (+ ``addon``), to be registered with :func:`recrepro.registry.register`.

    Args:
        doc: one line saying what the method is (``recrepro list`` shows it).
        defaults: the reference's top-level values for this combination, where they differ from the parts'.
        reference: the reference's per-dataset values (default: the backbone's).
        presets: named alternatives to the reference values, e.g. ``{"paper": {"*": {...}}}``.
        notes: deviations to name for datasets the reference has no config block for.
    """
    bases = (addon.Params, backbone.params) if addon is not None else (backbone.params,)
    merged = create_model(f"{backbone.params.__name__}", __base__=bases) if len(bases) > 1 else bases[0]
    params = create_model(merged.__name__, __base__=merged, **_with_defaults(merged, defaults)) if defaults else merged

    def search_space(trial: Any) -> dict[str, Any]:
        return backbone.search_space(trial) | (addon.search_space(trial) if addon is not None else {})

    return type(
        f"{backbone.name}+{addon.__name__}" if addon is not None else backbone.name,
        (GraphMethod,),
        {
            "__doc__": doc,
            "Params": params,
            "backbone": backbone,
            "addon_class": addon,
            "reference": backbone.reference if reference is None else reference,
            "presets": presets or {},
            "requires": addon.requires if addon is not None else (),
            "top_level_notes": notes,
            "search_space": staticmethod(search_space),
        },
    )
