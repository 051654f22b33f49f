"""The one training loop every method runs through (reference: IRLLRec/RLMRec ``trainer/trainer.py``).

Per epoch: one uniform negative per training pair, a shuffled pass in mini-batches, Adam. Validation every
``test_step`` epochs (epochs 0, test_step, 2*test_step, ...); the best state by validation ``select_metric``
(strict improvement) is kept; training stops after ``patience`` validations without improvement. The best
state is restored and the test set is evaluated once.
"""

from __future__ import annotations

import copy
import logging
import random
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recrepro.config import RunConfig
from recrepro.data.canonical import InteractionData
from recrepro.evaluation import EvalResult, Evaluator
from recrepro.graph import DGL_CUDA_INSTALL, InteractionGraph, dgl_has_cuda
from recrepro.method import Method, MethodInputs
from recrepro.progress import progress_bar
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
    return cls(inputs, config.model_params()).to(device)


class _Checkpoint:
    """Resumable training state, saved at every validation."""

    def __init__(self, path: Path | None, config: RunConfig) -> None:
        self.path = path
        self.key = config.model_dump_json()

    def load(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.is_file():
            return None
        state = torch.load(self.path, weights_only=True)
        if state.get("config") != self.key:
            log.warning("ignoring checkpoint %s: it was written for another configuration", self.path)
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({**state, "config": self.key}, tmp)
        tmp.replace(self.path)


def _train_epoch(
    model: Method,
    optimizer: torch.optim.Optimizer,
    sampler: NegativeSampler,
    rng: np.random.Generator,
    tp,
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
    side_inputs = {name: value.describe() for name, value in model.inputs.extras.items()}
    deviations = list(config.deviations) + [
        value.deviation for value in model.inputs.extras.values() if getattr(value, "deviation", None)
    ]
    optimizer = torch.optim.Adam(model.parameters(), lr=tp.lr, weight_decay=tp.weight_decay)
    sampler = NegativeSampler(data)
    val_eval = Evaluator(data.train_csr, data.csr("val"), tp.ks, tp.eval_batch_size, device)

    state = {
        "epoch": 0,
        "best_metric": -np.inf,
        "best_epoch": -1,
        "best_state": None,
        "bad_validations": 0,
        "history": [],
        "train_seconds": 0.0,
        "eval_seconds": 0.0,
        "epochs_run": 0,
    }
    ckpt = _Checkpoint(checkpoint, config)
    if (saved := ckpt.load()) is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        rng.bit_generator.state = saved["numpy_rng"]
        torch.set_rng_state(saved["torch_rng"])
        if saved["cuda_rng"]:
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        state = saved["loop"]
        log.info("resumed %s from %s at epoch %d", config.method, checkpoint, state["epoch"])

    bar = progress_bar(tp.max_epochs, f"{config.method}/{config.dataset}", "epoch", progress, initial=state["epoch"])
    stopped_early = False
    for epoch in range(state["epoch"], tp.max_epochs):
        start = time.perf_counter()
        losses = _train_epoch(model, optimizer, sampler, rng, tp, device, f"{config.method}, epoch {epoch}")
        state["train_seconds"] += time.perf_counter() - start
        state["epochs_run"] = epoch + 1
        state["epoch"] = epoch + 1
        bar.update(1)
        bar.set_postfix(
            loss=f"{losses.get('loss', float('nan')):.4f}", best=f"{max(state['best_metric'], 0):.4f}", refresh=False
        )

        if epoch % tp.test_step != 0:
            continue
        start = time.perf_counter()
        model.eval()
        with torch.no_grad():
            result = val_eval.evaluate(*model.embeddings())
        state["eval_seconds"] += time.perf_counter() - start
        metric = result[tp.select_metric]
        improved = metric > state["best_metric"]
        if improved:
            state.update(
                best_metric=metric,
                best_epoch=epoch,
                bad_validations=0,
                best_state=copy.deepcopy(model.state_dict()),
                best_val=result.means,
            )
        else:
            state["bad_validations"] += 1
        state["history"].append({"epoch": epoch, "losses": losses, "val": result.means})
        log.info(
            "epoch %d  loss %.5f  val %s %.5f%s",
            epoch,
            losses.get("loss", float("nan")),
            tp.select_metric,
            metric,
            "  (best)" if improved else "",
        )
        ckpt.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "numpy_rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
                "loop": state,
            }
        )
        if on_validation is not None:
            on_validation(epoch, metric)
        if state["bad_validations"] >= tp.patience:
            stopped_early = True
            break
    bar.close()

    model.load_state_dict(state["best_state"])
    model.eval()
    best_val = val_eval.evaluate(*model.embeddings())
    test_result = None
    if evaluate_test:
        test_eval = Evaluator(data.train_csr, data.csr("test"), tp.ks, tp.eval_batch_size, device)
        with torch.no_grad():
            test_result = test_eval.evaluate(*model.embeddings())
    n_validations = len(state["history"])
    record = {
        "method": config.method,
        "dataset": config.dataset,
        "seed": config.seed,
        "preset": config.preset,
        "config": config.model_dump(mode="json"),
        "deviations": deviations,
        "side_inputs": side_inputs,
        "dataset_sha256": data.checksum,
        "inputs": {
            "dataset_sha256": data.checksum,
            **{name: value.fingerprint() for name, value in model.inputs.extras.items()},
        },
        "metrics": {"val": best_val.means, **({"test": test_result.means} if test_result else {})},
        "n_eval_users": {"val": len(best_val.users), **({"test": len(test_result.users)} if test_result else {})},
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epochs_run"],
        "stopped_early": stopped_early,
        "seconds_per_epoch": state["train_seconds"] / max(state["epochs_run"], 1),
        "seconds_per_validation": state["eval_seconds"] / max(n_validations, 1),
        "train_seconds": state["train_seconds"],
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        **peak_memory_mb(device),
    }
    return RunOutcome(record=record, val=best_val, test=test_result, history=state["history"])
