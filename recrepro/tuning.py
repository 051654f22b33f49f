"""Hyperparameter tuning with Optuna: equal budgets, validation only, resumable, shareable between workers.

- One study per (variant, dataset), with a deterministic name; journal-file storage by default (safe with
  several local processes), or any RDB URL (PostgreSQL for multi-node runs).
- The objective trains on the training split and returns the best validation metric; it reports the metric at
  every validation (``trial.report``) so unpromising trials are pruned. The test split is never evaluated.
- Every trial's sampler is seeded by its number (seed + trial number), so what a trial samples does not depend
  on which worker runs it or in which order parallel workers start; trials a killed worker left RUNNING are
  marked FAILED when that worker restarts.
- The budget (trials, and optionally wall time per worker) is the same for every method. It is split
  deterministically between the workers (worker i runs its share of the trials), and before every trial a
  worker claims a place in the study-wide budget: a trial is only run if fewer than ``trials`` trials that have
  not failed precede it (by the storage's atomic trial numbers), so a study never has more finished trials than
  its budget, however many workers run it and whatever changed between runs (such as the worker count).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from recrepro.atomic import write_text
from recrepro.config import ConfigError, merge_overrides, resolve_config
from recrepro.data.canonical import InteractionData
from recrepro.registry import get_method
from recrepro.trainer import ExtrasLoader, train_run
from recrepro.workflow_config import storage_url_problem

log = logging.getLogger(__name__)

SEARCH_SPACE_VERSION = 1
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class TuningSettings:
    """The tuning budget and machinery, identical for every method."""

    trials: int = 8
    timeout_s: float | None = None  # wall-time budget per worker, on top of the trial budget
    seed: int = 2023
    storage: str = ""  # "" = journal file next to the study; or an RDB URL such as postgresql://...
    pruner_startup_trials: int = 3
    pruner_warmup_validations: int = 2


def study_name(variant: str, dataset: str) -> str:
    return f"{variant}--{dataset}--space-v{SEARCH_SPACE_VERSION}"


def open_storage(url: str, study_dir: Path):
    """Journal file in ``study_dir`` by default; an RDB storage for a database URL."""
    if not url:
        study_dir.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(study_dir / "journal.log")))
    problem = storage_url_problem(url)
    if problem:
        raise ConfigError(f"tuning storage: {problem}")
    return RDBStorage(url, engine_kwargs={"pool_pre_ping": True})


def _pruner(settings: TuningSettings) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(
        n_startup_trials=settings.pruner_startup_trials, n_warmup_steps=settings.pruner_warmup_validations
    )


def create_study(
    variant: str,
    dataset: str,
    settings: TuningSettings,
    study_dir: Path,
    reference: dict[str, Any] | None = None,
) -> optuna.Study:
    """Create the study if needed (idempotent). A new study's first trial is ``reference`` when given: the
    reference configuration, so that a tuned method is never worse on validation than its released settings
    (the same for every method, inside the same budget)."""
    study = optuna.create_study(
        study_name=study_name(variant, dataset),
        storage=open_storage(settings.storage, study_dir),
        direction="maximize",
        load_if_exists=True,
        pruner=_pruner(settings),
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
    )
    if reference is not None and not study.trials:
        study.enqueue_trial(reference, user_attrs={"reference": True})
    return study


class _Recorder:
    """A stand-in trial that records the distribution a search space asks for under each name."""

    def __init__(self) -> None:
        self.distributions: dict[str, optuna.distributions.BaseDistribution] = {}

    def suggest_float(self, name, low, high, *, log=False, step=None):
        self.distributions[name] = optuna.distributions.FloatDistribution(low, high, log=log, step=step)
        return low

    def suggest_int(self, name, low, high, *, log=False, step=1):
        self.distributions[name] = optuna.distributions.IntDistribution(low, high, log=log, step=step)
        return low

    def suggest_categorical(self, name, choices):
        self.distributions[name] = optuna.distributions.CategoricalDistribution(choices)
        return choices[0]


def search_space(method: str) -> dict[str, tuple[str, optuna.distributions.BaseDistribution]]:
    """The method's search space: config key ("model.layers") -> (trial parameter name, distribution)."""
    recorder = _Recorder()
    keys = get_method(method).search_space(recorder)
    return {key: (name, recorder.distributions[name]) for key, name in zip(keys, recorder.distributions)}


def reference_trial(method: str, dataset: str, preset: str = "faithful", base_overrides=None) -> dict[str, Any]:
    """The trial parameters that reproduce the method's reference configuration on ``dataset`` (with the fixed
    overrides and the preset a study applies to every trial)."""
    config = resolve_config(method, dataset, preset=preset, overrides=base_overrides)
    return {
        name: getattr(config.train if key.startswith("train.") else config.model, key.partition(".")[2])
        for key, (name, _) in search_space(method).items()
    }


def sample_overrides(method: str, trial: optuna.Trial) -> dict[str, dict[str, Any]]:
    """The method's search space as ``{"model": {...}, "train": {...}}`` overrides."""
    overrides: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
    for key, value in get_method(method).search_space(trial).items():
        section, _, name = key.partition(".")
        overrides[section][name] = value
    return overrides


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """TPE whose random stream is seeded by the trial's number (``seed + number``), not by the worker: a trial's
    parameters do not depend on which worker runs it, on the order in which parallel workers ask, or on restarts,
    so a study run by two local processes and one run by two cluster jobs sample the same values (as long as TPE
    sees the same history: always during its random start-up trials)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._by_trial: dict[int, optuna.samplers.TPESampler] = {}

    def _tpe(self, trial: optuna.trial.FrozenTrial) -> optuna.samplers.TPESampler:
        if trial.number not in self._by_trial:
            self._by_trial[trial.number] = optuna.samplers.TPESampler(seed=self.seed + trial.number)
        return self._by_trial[trial.number]

    def infer_relative_search_space(self, study, trial):
        return self._tpe(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._tpe(trial).before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe(trial).after_trial(study, trial, state, values)
        self._by_trial.pop(trial.number, None)


def _host() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_here(host: str | None) -> bool:
    """Whether ``host`` ("hostname:pid") names a process of this machine that no longer exists."""
    name, _, pid = (host or "").rpartition(":")
    if name != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def fail_stale_trials(study: optuna.Study, worker: int) -> list[int]:
    """Mark trials left RUNNING by a stopped worker as FAILED -- this worker's own, and any whose process on this
    machine no longer exists (a worker index that is not run again); returns their numbers."""
    stale = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if t.user_attrs.get("worker") == worker or _dead_here(t.user_attrs.get("host"))
    ]
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
        log.warning("trial %d was left running by a stopped worker; marked as failed", trial.number)
    return [t.number for t in stale]


def _claimed(study: optuna.Study, up_to: int | None = None) -> int:
    """Trials that hold a place in the budget (all but failed ones), up to trial number ``up_to``."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state != TrialState.FAIL and (up_to is None or t.number <= up_to)
    )


def worker_share(trials: int, workers: int, worker: int) -> int:
    """How many of the study's trials worker ``worker`` (0-based) of ``workers`` runs."""
    return trials // workers + (worker < trials % workers)


def run_worker(
    variant: str,
    method: str,
    dataset: str,
    data: InteractionData,
    settings: TuningSettings,
    study_dir: Path,
    worker: int,
    workers: int,
    base_overrides: dict[str, dict[str, Any]] | None = None,
    preset: str = "faithful",
    device: str = "cpu",
    extras_loader: ExtrasLoader | None = None,
) -> dict[str, Any]:
    """Run this worker's share of the study's trials (or until its time is up), resuming after a restart."""
    study = optuna.load_study(
        study_name=study_name(variant, dataset),
        storage=open_storage(settings.storage, study_dir),
        sampler=TrialSeededSampler(settings.seed),
        pruner=_pruner(settings),
    )
    failed = fail_stale_trials(study, worker)

    def objective(trial: optuna.Trial) -> float:
        overrides = merge_overrides(base_overrides or {}, sample_overrides(method, trial))
        config = resolve_config(method, dataset, seed=settings.seed, device=device, preset=preset, overrides=overrides)

        def report(epoch: int, metric: float) -> None:
            trial.report(metric, step=epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()

        outcome = train_run(
            config, data, extras_loader=extras_loader, on_validation=report, evaluate_test=False, progress=False
        )
        trial.set_user_attr("best_epoch", outcome.record["best_epoch"])
        return outcome.record["metrics"]["val"][config.train.select_metric]

    started = time.time()
    done = sum(
        1 for t in study.get_trials(deepcopy=False) if t.state in FINISHED and t.user_attrs.get("worker") == worker
    )
    over_budget = 0
    for _ in range(worker_share(settings.trials, workers, worker) - done):
        if settings.timeout_s is not None and time.time() - started >= settings.timeout_s:
            break
        if _claimed(study) >= settings.trials:
            break
        trial = study.ask()  # numbered atomically by the storage
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("host", _host())
        if _claimed(study, up_to=trial.number) > settings.trials:  # another worker claimed the last place first
            trial.set_user_attr("over_budget", True)
            study.tell(trial, state=TrialState.FAIL)
            over_budget += 1
            break
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            study.tell(trial, value)
        gc.collect()
    mine = [
        t.number
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("worker") == worker and not t.user_attrs.get("over_budget")
    ]
    return {
        "worker": worker,
        "trials": mine,
        "failed_stale": failed,
        "over_budget": over_budget,
        "seconds": round(time.time() - started, 1),
    }


def export_best(
    variant: str,
    dataset: str,
    method: str,
    settings: TuningSettings,
    study_dir: Path,
    base_overrides: dict[str, dict[str, Any]] | None = None,
    preset: str = "faithful",
) -> dict[str, Any]:
    """The best trial's hyperparameters as overrides, with a summary of the study."""
    study = optuna.load_study(
        study_name=study_name(variant, dataset), storage=open_storage(settings.storage, study_dir)
    )
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise RuntimeError(f"study {study.study_name} has no complete trial; tune again with a larger budget")
    best = max(complete, key=lambda t: (t.value, -t.number))
    overrides = merge_overrides(base_overrides or {}, sample_overrides(method, optuna.trial.FixedTrial(best.params)))
    trials = [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get("over_budget")]
    counts = {
        state.name.lower(): sum(1 for t in trials if t.state == state)
        for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    counts["finished"] = counts["complete"] + counts["pruned"]
    metric = resolve_config(method, dataset, preset=preset, overrides=overrides).train.select_metric
    return {
        "study": study.study_name,
        "best_trial": best.number,
        "best_value": best.value,
        "metric": f"validation {metric}",
        "budget": {"trials": settings.trials, "timeout_s": settings.timeout_s},
        "trials": counts,
        "overrides": overrides,
    }


def write_best(path: Path, summary: dict[str, Any]) -> None:
    write_text(path, yaml.safe_dump(summary, sort_keys=False))


def write_json(path: Path, payload: dict[str, Any]) -> None:
    write_text(path, json.dumps(payload, indent=1) + "\n")
