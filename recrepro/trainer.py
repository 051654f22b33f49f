"""The one training loop every method runs through (reference: IRLLRec/RLMRec ``trainer/trainer.py``).

Per epoch: one uniform negative per training pair, a shuffled pass in mini-batches, Adam. Validation every
``test_step`` epochs (epochs 0, test_step, 2*test_step, ...); the best state by validation ``select_metric``
(strict improvement) is kept; training stops after ``patience`` validations without improvement. The best
state is restored and the test set is evaluated once.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import random
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recrepro.atomic import atomic_write
from recrepro.config import RunConfig, TrainParams
from recrepro.data.canonical import InteractionData
from recrepro.evaluation import EvalResult, Evaluator
from recrepro.graph import DGL_CUDA_INSTALL, InteractionGraph, dgl_has_cuda
from recrepro.method import Method, MethodInputs
from recrepro.progress import progress_bar
from recrepro.provenance import git_commit
from recrepro.registry import get_method
from recrepro.sampling import NegativeSampler

log = logging.getLogger(__name__)

ValidationHook = Callable[[int, float], None]
ExtrasLoader = Callable[[str, InteractionData], Any]


class TrainingError(RuntimeError):
    """Training cannot continue (a non-finite loss, a missing device, ...)."""


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """The torch device ``name``, after checking that torch and DGL can both use it."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda was requested but torch sees no CUDA device; use --device cpu")
        if not dgl_has_cuda():
            import dgl

            raise TrainingError(
                f"--device cuda was requested but the installed DGL {dgl.__version__} was built without CUDA (the "
                f"PyPI wheel is CPU-only). Install DGL's CUDA build for torch {torch.__version__.split('+')[0]}: "
                f"{DGL_CUDA_INSTALL}"
            )
    return device


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """Peak resident memory of this process, and peak CUDA memory allocated by torch when on a GPU."""
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


@dataclass
class RunOutcome:
    """What a run produced: the JSON-able record, and per-user results for analyses."""

    record: dict[str, Any]
    val: EvalResult
    test: EvalResult | None
    history: list[dict[str, Any]] = field(default_factory=list)


def build_model(
    config: RunConfig, data: InteractionData, device: torch.device, extras_loader: ExtrasLoader | None = None
) -> Method:
    """Instantiate the configured method on ``data`` with the side inputs it declares."""
    cls = get_method(config.method)
    extras = {}
    for name in cls.requires:
        if extras_loader is None:
            raise TrainingError(f"{config.method} needs input {name!r} but no loader for side inputs was given")
        extras[name] = extras_loader(name, data)
    inputs = MethodInputs(data=data, graph=InteractionGraph(data, device), device=device, extras=extras)
    return cls(inputs, config.model).to(device)


@dataclass
class LoopState:
    """Where training stands; saved in checkpoints (plain values and tensors only)."""

    epoch: int = 0  # epochs done
    best_metric: float = -math.inf
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    bad_validations: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    stopped_early: bool = False
    code: list[dict[str, Any]] = field(default_factory=list)  # the checkout of each process that trained, by epoch


class _Checkpoint:
    """Resumable training state (model, optimizer, random streams, loop), saved at every validation."""

    def __init__(self, path: Path | None, config: RunConfig, inputs: dict[str, Any]) -> None:
        self.path = path
        self.key = json.dumps({"config": config.model_dump(mode="json"), "inputs": inputs}, sort_keys=True)

    def restore(self, model: Method, optimizer: torch.optim.Optimizer, rng: np.random.Generator) -> LoopState | None:
        """Load a checkpoint of this configuration into the objects; None if there is none."""
        if self.path is None or not self.path.is_file():
            return None
        saved = torch.load(self.path, weights_only=True)
        if saved.get("config") != self.key:
            log.warning("ignoring checkpoint %s: it was written for another configuration or other inputs", self.path)
            return None
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["numpy_rng"]
        torch.set_rng_state(saved["torch_rng"])
        if saved["cuda_rng"]:
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        return LoopState(**saved["loop"])

    def save(self, model: Method, optimizer: torch.optim.Optimizer, rng: np.random.Generator, state: LoopState):
        if self.path is None:
            return
        payload = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "numpy_rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "loop": asdict(state),
            "config": self.key,
        }
        with atomic_write(self.path, binary=True) as handle:
            torch.save(payload, handle)


def _train_epoch(
    model: Method,
    optimizer: torch.optim.Optimizer,
    sampler: NegativeSampler,
    rng: np.random.Generator,
    tp: TrainParams,
    device: torch.device,
    where: str,
) -> dict[str, float]:
    """One shuffled pass over the training pairs with fresh negatives; returns the mean of each loss term."""
    model.train()
    users, items = torch.from_numpy(sampler.users), torch.from_numpy(sampler.items)
    negatives = torch.from_numpy(sampler.sample(rng))
    order = torch.from_numpy(rng.permutation(len(users)))
    stop = len(order) - len(order) % tp.batch_size if tp.drop_last else len(order)
    sums: dict[str, torch.Tensor] = {}
    n_batches = 0
    for begin in range(0, stop, tp.batch_size):
        idx = order[begin : begin + tp.batch_size]
        model.before_step()
        terms = model.loss(users[idx].to(device), items[idx].to(device), negatives[idx].to(device))
        if not torch.isfinite(terms["loss"]):
            raise TrainingError(
                f"{where}, batch {n_batches}: non-finite loss; terms: { {k: float(v) for k, v in terms.items()} }"
            )
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        for name, value in terms.items():
            sums[name] = sums.get(name, 0) + value.detach()
        n_batches += 1
    return {name: float(total) / max(n_batches, 1) for name, total in sums.items()}


@torch.no_grad()
def _evaluate(model: Method, evaluator: Evaluator) -> EvalResult:
    """Full-ranking metrics of the model's current representations (no autograd graph is built)."""
    model.eval()
    return evaluator.evaluate(*model.embeddings())


def _validate(
    model: Method, evaluator: Evaluator, state: LoopState, epoch: int, losses: dict[str, float], tp: TrainParams
) -> float:
    """Evaluate on validation, keep the best state (strict improvement) and count validations without one."""
    start = time.perf_counter()
    result = _evaluate(model, evaluator)
    state.eval_seconds += time.perf_counter() - start
    metric = result[tp.select_metric]
    improved = metric > state.best_metric
    if improved:
        state.best_metric, state.best_epoch, state.bad_validations = metric, epoch, 0
        state.best_state = copy.deepcopy(model.state_dict())
    else:
        state.bad_validations += 1
    state.history.append({"epoch": epoch, "losses": losses, "val": result.means})
    log.info(
        "epoch %d  loss %.5f  val %s %.5f%s",
        epoch,
        losses.get("loss", float("nan")),
        tp.select_metric,
        metric,
        "  (best)" if improved else "",
    )
    return metric


def _inputs(data: InteractionData, model: Method) -> dict[str, Any]:
    """Checksums of everything the run reads: the dataset and each side input."""
    extras = model.inputs.extras
    return {"dataset_sha256": data.checksum, **{name: value.fingerprint() for name, value in extras.items()}}


def _record(
    config: RunConfig,
    data: InteractionData,
    inputs: dict[str, Any],
    model: Method,
    state: LoopState,
    val: EvalResult,
    test: EvalResult | None,
) -> dict[str, Any]:
    """The run record: configuration, inputs, metrics, training facts and costs."""
    extras = model.inputs.extras
    epochs = max(state.epoch, 1)
    return {
        "method": config.method,
        "dataset": config.dataset,
        "seed": config.seed,
        "preset": config.preset,
        "config": config.model_dump(mode="json"),
        "deviations": list(config.deviations) + [v.deviation for v in extras.values() if getattr(v, "deviation", None)],
        "side_inputs": {name: value.describe() for name, value in extras.items()},
        "dataset_sha256": data.checksum,
        "inputs": inputs,
        "metrics": {"val": val.means, **({"test": test.means} if test else {})},
        "n_eval_users": {"val": len(val.users), **({"test": len(test.users)} if test else {})},
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "trained_by": state.code,
        "seconds_per_epoch": state.train_seconds / epochs,
        "seconds_per_validation": state.eval_seconds / max(len(state.history), 1),
        "train_seconds": state.train_seconds,
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "device": str(model.inputs.device),
        **peak_memory_mb(model.inputs.device),
    }


def train_run(
    config: RunConfig,
    data: InteractionData,
    *,
    extras_loader: ExtrasLoader | None = None,
    on_validation: ValidationHook | None = None,
    evaluate_test: bool = True,
    checkpoint: Path | None = None,
    progress: bool | None = None,
) -> RunOutcome:
    """Train one configured method on ``data``.

    Args:
        on_validation: called with (epoch, validation metric) after each validation; may raise to stop
            (Optuna pruning).
        evaluate_test: evaluate the test set once at the end (tuning trials set this to False).
        checkpoint: file to save resumable state to at every validation, and to resume from if present.
        progress: show a progress bar (default on; throttled in log files).
    """
    device = resolve_device(config.device)
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    tp = config.train
    model = build_model(config, data, device, extras_loader)
    optimizer = torch.optim.Adam(model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay)
    sampler = NegativeSampler(data)
    val_eval = Evaluator(data.train_csr, data.csr("val"), tp.ks, tp.eval_batch_size, device)
    inputs = _inputs(data, model)
    ckpt = _Checkpoint(checkpoint, config, inputs)
    state = ckpt.restore(model, optimizer, rng) or LoopState()
    if state.epoch:
        log.info("resumed %s from %s at epoch %d", config.method, checkpoint, state.epoch)
    state.code.append({"from_epoch": state.epoch, **git_commit()})

    bar = progress_bar(tp.max_epochs, f"{config.method}/{config.dataset}", "epoch", progress, initial=state.epoch)
    for epoch in range(state.epoch, tp.max_epochs):
        start = time.perf_counter()
        losses = _train_epoch(model, optimizer, sampler, rng, tp, device, f"{config.method}, epoch {epoch}")
        state.train_seconds += time.perf_counter() - start
        state.epoch = epoch + 1
        bar.update(1)
        bar.set_postfix(
            loss=f"{losses.get('loss', math.nan):.4f}", best=f"{max(state.best_metric, 0):.4f}", refresh=False
        )
        if epoch % tp.test_step != 0:
            continue
        metric = _validate(model, val_eval, state, epoch, losses, tp)
        state.stopped_early = state.bad_validations >= tp.patience
        ckpt.save(model, optimizer, rng, state)
        if on_validation is not None:
            on_validation(epoch, metric)
        if state.stopped_early:
            break
    bar.close()

    model.load_state_dict(state.best_state)
    best_val = _evaluate(model, val_eval)
    test = None
    if evaluate_test:  # the test set, once
        test = _evaluate(model, Evaluator(data.train_csr, data.csr("test"), tp.ks, tp.eval_batch_size, device))
    return RunOutcome(
        record=_record(config, data, inputs, model, state, best_val, test),
        val=best_val,
        test=test,
        history=state.history,
    )
