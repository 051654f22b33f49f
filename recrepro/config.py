"""Run configuration: training settings shared by all methods, plus one method's hyperparameters.

Resolution order (later wins): the method's ``Params`` defaults (the reference's top-level values), the
reference's values for the dataset, the chosen preset (``faithful`` adds nothing), then explicit overrides.
Every resolved value that differs from the reference for that dataset is recorded as a named deviation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator, model_validator

from recrepro.method import MethodParams
from recrepro.metrics import CUTOFFS, SELECTION, metric_names
from recrepro.registry import get_method


class TrainParams(BaseModel):
    """The shared training loop's settings (reference: IRLLRec/RLMRec ``train`` and ``test`` blocks)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(4096, gt=0)
    drop_last: bool = False
    max_epochs: int = Field(3000, gt=0)
    test_step: int = Field(3, gt=0, description="validate when epoch % test_step == 0")
    patience: int = Field(5, gt=0, description="validations without strict improvement before stopping")
    select_metric: str = SELECTION
    ks: tuple[int, ...] = CUTOFFS
    eval_batch_size: int = Field(1024, gt=0)

    @field_validator("ks")
    @classmethod
    def _cutoffs_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(k <= 0 for k in value):
            raise ValueError(f"ks must be a non-empty list of positive cut-offs, got {list(value)}")
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _selection_is_computed(self) -> TrainParams:
        computed = metric_names(self.ks)
        if self.select_metric not in computed:
            raise ValueError(
                f"select_metric {self.select_metric!r} is not one of the computed metrics {list(computed)} "
                f"(ks={list(self.ks)})"
            )
        return self


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


class RunConfig(BaseModel):
    """Everything that determines one training run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str
    dataset: str
    seed: int = 2023
    device: str = "cpu"
    preset: str = "faithful"
    train: TrainParams
    model: SerializeAsAny[MethodParams]  # an instance of the method's own Params, validated once
    deviations: tuple[str, ...] = ()


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """Parse ``section.key=value`` strings (section ``model`` or ``train``; values in YAML syntax)."""
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for item in items:
        key, sep, raw = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or section not in out or not name:
            raise ConfigError(f"override {item!r} must look like model.<name>=<value> or train.<name>=<value>")
        out[section][name] = yaml.safe_load(raw)
    return out


def _validated(cls: type[BaseModel], values: dict[str, Any], what: str) -> BaseModel:
    unknown = set(values) - set(cls.model_fields)
    if unknown:
        raise ConfigError(f"unknown {what} key(s) {sorted(unknown)}; valid keys: {sorted(cls.model_fields)}")
    try:
        return cls(**values)
    except ValidationError as err:
        raise ConfigError(f"invalid {what} value:\n{err}") from err


def _differences(resolved: BaseModel, reference: BaseModel, section: str) -> list[str]:
    return [
        f"{section}.{name}={getattr(resolved, name)!r} (reference {getattr(reference, name)!r})"
        for name in type(resolved).model_fields
        if getattr(resolved, name) != getattr(reference, name)
    ]


def resolve_config(
    method: str,
    dataset: str,
    *,
    seed: int = 2023,
    device: str = "cpu",
    preset: str = "faithful",
    overrides: dict[str, dict[str, Any]] | None = None,
) -> RunConfig:
    """Resolve the full configuration of one run and name its deviations from the reference."""
    cls = get_method(method)
    overrides = overrides or {}
    unknown_sections = set(overrides) - {"model", "train"}
    if unknown_sections:
        raise ConfigError(f"unknown override section(s) {sorted(unknown_sections)}; use 'model' or 'train'")
    if preset != "faithful" and preset not in cls.presets:
        raise ConfigError(f"{method} has no preset {preset!r}; presets: {['faithful', *cls.presets]}")

    model_ref = {**cls.reference.get(dataset, {})}
    train_ref = dict(cls.train_defaults)
    preset_values = cls.presets.get(preset, {})
    model_reference = _validated(cls.Params, model_ref, f"{method} model")
    train_reference = _validated(TrainParams, train_ref, "train")
    model = _validated(
        cls.Params,
        {**model_ref, **preset_values.get(dataset, preset_values.get("*", {})), **overrides.get("model", {})},
        f"{method} model",
    )
    train = _validated(TrainParams, {**train_ref, **overrides.get("train", {})}, "train")

    deviations = list(cls.known_deviations)
    if dataset not in cls.reference:
        deviations.append(f"no reference config for dataset {dataset!r}: the reference's top-level values are used")
        deviations += cls.top_level_notes
    deviations += _differences(model, model_reference, "model") + _differences(train, train_reference, "train")
    return RunConfig(
        method=method,
        dataset=dataset,
        seed=seed,
        device=device,
        preset=preset,
        train=train,
        model=model,
        deviations=tuple(deviations),
    )


def merge_overrides(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Later layers win, key by key within each section."""
    out: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for layer in layers:
        for section, values in layer.items():
            out.setdefault(section, {}).update(values)
    return out


def read_best_summary(path: Path) -> dict[str, Any]:
    """A tuning result (``best.yaml``, written by :func:`recrepro.tuning.write_best`): study, best trial, budget
    and the tuned ``overrides``."""
    summary = yaml.safe_load(Path(path).read_text())
    if not isinstance(summary, dict) or "overrides" not in summary:
        raise ConfigError(f"{path} is not a tuning result (no 'overrides')")
    return summary
