"""Tuning: valid search spaces containing the reference values, resumable studies, parallel workers, zombies."""

import json
import socket
import subprocess
import sys

import optuna
import pytest
from helpers import clustered_interactions, write_canonical, write_card

from recrepro.config import read_best_summary, resolve_config
from recrepro.registry import get_method, list_methods
from recrepro.tuning import (
    TuningSettings,
    create_study,
    export_best,
    open_storage,
    reference_trial,
    run_worker,
    sample_overrides,
    search_space,
    study_name,
    worker_share,
    write_best,
)

FAST = {"train": {"max_epochs": 4, "batch_size": 256, "test_step": 1}}


@pytest.mark.parametrize("method", list_methods())
def test_search_space_samples_valid_configurations(method):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(15):
        trial = study.ask()
        overrides = sample_overrides(method, trial)
        config = resolve_config(method, "toy", overrides=overrides)
        for name, value in overrides["model"].items():  # every sampled value reaches the run's configuration
            assert getattr(config.model, name) == value
        for name, value in overrides["train"].items():
            assert getattr(config.train, name) == value
        study.tell(trial, 0.0)


@pytest.mark.parametrize("method", list_methods())
def test_reference_values_lie_inside_the_search_space(method):
    space = search_space(method)
    for dataset in [*get_method(method).reference, "some-new-dataset"]:
        faithful = resolve_config(method, dataset)
        params = reference_trial(method, dataset)
        for key, (name, distribution) in space.items():
            assert distribution._contains(distribution.to_internal_repr(params[name])), f"{dataset}: {key} outside"
        fixed = resolve_config(method, dataset, overrides=sample_overrides(method, optuna.trial.FixedTrial(params)))
        assert fixed.model == faithful.model and fixed.train == faithful.train


def test_a_new_study_tries_the_reference_configuration_first(toy, tmp_path):
    settings = TuningSettings(trials=2, seed=3)
    reference = reference_trial("lightgcn", "toy", base_overrides=FAST)
    create_study("lgcn", "toy", settings, tmp_path, reference)
    create_study("lgcn", "toy", settings, tmp_path, reference)  # idempotent: queued once
    run_worker("lgcn", "lightgcn", "toy", toy, settings, tmp_path, 0, 1, base_overrides=FAST)
    study = optuna.load_study(study_name=study_name("lgcn", "toy"), storage=open_storage("", tmp_path))
    first, second = sorted(study.trials, key=lambda t: t.number)
    assert first.params == reference and first.user_attrs["reference"]
    assert second.params != reference and len(study.trials) == 2


def test_budget_is_split_exactly_between_workers():
    assert [worker_share(10, 3, w) for w in range(3)] == [4, 3, 3]
    assert sum(worker_share(7, 4, w) for w in range(4)) == 7


@pytest.fixture
def toy():
    return clustered_interactions(n_users=30, n_items=50, seed=2)


def test_resumed_study_continues_rather_than_restarts(toy, tmp_path):
    settings = TuningSettings(trials=2, seed=3)
    create_study("lgcn", "toy", settings, tmp_path)
    first = run_worker("lgcn", "lightgcn", "toy", toy, settings, tmp_path, 0, 1, base_overrides=FAST)
    assert first["trials"] == [0, 1]
    again = run_worker("lgcn", "lightgcn", "toy", toy, settings, tmp_path, 0, 1, base_overrides=FAST)
    assert again["trials"] == [0, 1]  # budget already spent: nothing new
    more = TuningSettings(trials=4, seed=3)
    resumed = run_worker("lgcn", "lightgcn", "toy", toy, more, tmp_path, 0, 1, base_overrides=FAST)
    assert resumed["trials"] == [0, 1, 2, 3]
    summary = export_best("lgcn", "toy", "lightgcn", more, tmp_path, base_overrides=FAST)
    write_best(tmp_path / "best.yaml", summary)
    overrides = read_best_summary(tmp_path / "best.yaml")["overrides"]
    assert overrides["train"]["max_epochs"] == 4 and "layers" in overrides["model"]
    assert summary["trials"]["complete"] + summary["trials"]["pruned"] == 4


def test_what_a_trial_samples_does_not_depend_on_which_worker_runs_it(toy, tmp_path):
    settings = TuningSettings(trials=3, seed=5)
    studies = {}
    for order in ((0, 1), (1, 0)):  # worker 0 first, then worker 1 first
        folder = tmp_path / "".join(map(str, order))
        create_study("lgcn", "toy", settings, folder, reference={"layers": 2})
        for worker in order:
            run_worker("lgcn", "lightgcn", "toy", toy, settings, folder, worker, 2, base_overrides=FAST)
        trials = optuna.load_study(study_name=study_name("lgcn", "toy"), storage=open_storage("", folder)).trials
        studies[order] = {t.number: (t.params, t.value, t.user_attrs["worker"]) for t in trials}
    first, second = studies[(0, 1)], studies[(1, 0)]
    assert {n: p[:2] for n, p in first.items()} == {n: p[:2] for n, p in second.items()}
    assert [p[2] for p in first.values()] != [p[2] for p in second.values()]  # run by other workers
    assert len({json.dumps(p[0], sort_keys=True) for p in first.values()}) == 3


def test_trials_left_running_by_a_killed_worker_are_failed_on_restart(toy, tmp_path):
    settings = TuningSettings(trials=1)
    study = create_study("lgcn", "toy", settings, tmp_path)
    zombie = study.ask()
    zombie.set_user_attr("worker", 0)
    other = study.ask()  # another worker's trial in progress: must be left alone
    other.set_user_attr("worker", 1)
    summary = run_worker("lgcn", "lightgcn", "toy", toy, settings, tmp_path, 0, 2, base_overrides=FAST)
    states = {
        t.number: t.state
        for t in optuna.load_study(study_name=study_name("lgcn", "toy"), storage=open_storage("", tmp_path)).trials
    }
    assert summary["failed_stale"] == [zombie.number]
    assert states[zombie.number] == optuna.trial.TrialState.FAIL
    assert states[other.number] == optuna.trial.TrialState.RUNNING


def _finished(study_dir):
    study = optuna.load_study(study_name=study_name("lgcn", "toy"), storage=open_storage("", study_dir))
    return [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


def test_budget_stays_exact_when_the_worker_count_changes(toy, tmp_path):
    settings = TuningSettings(trials=3)
    create_study("lgcn", "toy", settings, tmp_path)
    for worker in range(2):  # shares 2 + 1
        run_worker("lgcn", "lightgcn", "toy", toy, settings, tmp_path, worker, 2, base_overrides=FAST)
    assert len(_finished(tmp_path)) == 3
    for worker in range(3):  # rerun with three workers (shares 1 + 1 + 1): worker 2 has done none of its share
        summary = run_worker("lgcn", "lightgcn", "toy", toy, settings, tmp_path, worker, 3, base_overrides=FAST)
    assert len(_finished(tmp_path)) == 3 and summary["trials"] == []
    best = export_best("lgcn", "toy", "lightgcn", settings, tmp_path, base_overrides=FAST)
    assert best["trials"]["finished"] == 3 and best["budget"]["trials"] == 3


def test_a_place_claimed_by_another_worker_is_not_run_twice(toy, tmp_path):
    settings = TuningSettings(trials=2)
    study = create_study("lgcn", "toy", settings, tmp_path)
    running = study.ask()  # another host's worker holds one place of the budget
    running.set_user_attr("worker", 1)
    running.set_user_attr("host", "another-host:1")
    summary = run_worker("lgcn", "lightgcn", "toy", toy, settings, tmp_path, 0, 1, base_overrides=FAST)
    assert len(summary["trials"]) == 1  # its share is 2, but only one place was left
    study.tell(running.number, 0.1)
    assert len(_finished(tmp_path)) == 2


def test_a_trial_of_a_dead_local_process_is_failed_whatever_its_worker_index(toy, tmp_path):
    settings = TuningSettings(trials=1)
    study = create_study("lgcn", "toy", settings, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = study.ask()
    orphan.set_user_attr("worker", 7)  # a worker index that is not run again
    orphan.set_user_attr("host", f"{socket.gethostname()}:{dead.pid}")
    summary = run_worker("lgcn", "lightgcn", "toy", toy, settings, tmp_path, 0, 1, base_overrides=FAST)
    assert summary["failed_stale"] == [orphan.number] and len(_finished(tmp_path)) == 1


def test_sqlite_storage_is_refused(tmp_path):
    with pytest.raises(ValueError, match="SQLite storage is unsafe"):
        open_storage(f"sqlite:///{tmp_path}/x.db", tmp_path)


def test_a_storage_url_with_a_password_is_refused_without_echoing_it(tmp_path):
    with pytest.raises(ValueError, match="PGPASSWORD or ~/.pgpass") as err:
        open_storage("postgresql://optuna:s3cret-pw@db.example.org:5432/optuna", tmp_path)
    assert "s3cret-pw" not in str(err.value)


def test_two_local_workers_share_a_journal_study(toy, tmp_path, monkeypatch):
    toy.name = "toy"
    write_card(tmp_path / "cards", toy, {"trn_mat.pkl": "0" * 64}, "http://x.invalid")
    monkeypatch.setenv("RECREPRO_CARDS", str(tmp_path / "cards"))
    write_canonical(toy, tmp_path / "data")
    study_dir = tmp_path / "study"
    settings = TuningSettings(trials=4)
    create_study("lgcn", "toy", settings, study_dir)
    base = [
        sys.executable,
        "-m",
        "recrepro",
        "tune",
        "worker",
        "--variant",
        "lgcn",
        "--method",
        "lightgcn",
        "--dataset",
        "toy",
        "--trials",
        "4",
        "--workers",
        "2",
        "--study-dir",
        str(study_dir),
        "--data",
        str(tmp_path / "data"),
        "--set",
        "train.max_epochs=3",
        "--set",
        "train.batch_size=256",
    ]
    workers = [
        subprocess.Popen(
            base + ["--worker", str(i), "--out", str(tmp_path / f"w{i}.json")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    study = optuna.load_study(study_name=study_name("lgcn", "toy"), storage=open_storage("", study_dir))
    finished = [
        t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    assert len(finished) == 4 and len({t.number for t in study.trials}) == len(study.trials)
    assert sorted(t.user_attrs["worker"] for t in finished) == [0, 0, 1, 1]
    assert all(json.loads((tmp_path / f"w{i}.json").read_text())["worker"] == i for i in range(2))
