"""The shared trainer: learning, early stopping, test-once, determinism, resume, and configuration errors."""

import dataclasses

import numpy as np
import pytest
import torch
from helpers import clustered_interactions, synthetic_extras

from recrepro.config import ConfigError, parse_overrides, resolve_config
from recrepro.evaluation import Evaluator
from recrepro.sampling import NegativeSampler
from recrepro.trainer import TrainingError, train_run

FAST = {"train": {"max_epochs": 30, "batch_size": 128, "test_step": 1, "patience": 30}}


@pytest.fixture(scope="module")
def toy():
    return clustered_interactions(n_users=80, n_items=160, seed=3)


def test_lightgcn_beats_a_random_scorer(toy):
    config = resolve_config("lightgcn", "toy", overrides={"train": {**FAST["train"], "lr": 0.01}})
    outcome = train_run(config, toy, progress=False)
    rng = torch.Generator().manual_seed(0)
    random_scores = Evaluator(toy.train_csr, toy.csr("test")).evaluate(
        torch.randn(toy.n_users, 8, generator=rng), torch.randn(toy.n_items, 8, generator=rng)
    )
    assert outcome.record["metrics"]["test"]["recall@20"] > 1.5 * random_scores["recall@20"]
    assert outcome.record["metrics"]["test"]["ndcg@20"] > 1.5 * random_scores["ndcg@20"]


def test_early_stopping_restores_best_state_and_tests_once(toy, monkeypatch):
    calls = []
    original = Evaluator.evaluate

    def counting(self, *args):
        calls.append(self)
        return original(self, *args)

    monkeypatch.setattr(Evaluator, "evaluate", counting)
    seen = []
    config = resolve_config(
        "lightgcn",
        "toy",
        overrides={"train": {"max_epochs": 200, "batch_size": 256, "test_step": 2, "patience": 3, "lr": 0.05}},
    )
    outcome = train_run(config, toy, progress=False, on_validation=lambda epoch, metric: seen.append((epoch, metric)))
    record = outcome.record
    assert [epoch for epoch, _ in seen] == list(range(0, record["epochs_run"], 2))
    best_epoch, best = max(seen, key=lambda item: item[1])
    assert record["best_epoch"] == best_epoch and record["metrics"]["val"]["recall@20"] == pytest.approx(best)
    # it stopped because the last `patience` validations brought no strict improvement, long before max_epochs
    assert record["stopped_early"] and record["epochs_run"] < 200
    assert [epoch for epoch, _ in seen[-3:]] == [best_epoch + 2 * k for k in (1, 2, 3)]
    test_evaluators = {id(e) for e in calls if e is not calls[0]}
    assert len([e for e in calls if id(e) in test_evaluators]) == 1  # the test set is evaluated exactly once


def test_same_seed_same_result_other_seed_differs(toy):
    config = resolve_config("lightgcn", "toy", overrides={"train": {**FAST["train"], "max_epochs": 6}})
    first = train_run(config, toy, progress=False).record["metrics"]["test"]
    again = train_run(config, toy, progress=False).record["metrics"]["test"]
    other = train_run(config.model_copy(update={"seed": 7}), toy, progress=False).record["metrics"]["test"]
    assert first == again
    assert first != other


class Interrupt(Exception):
    pass


def interrupt_at_epoch_4(epoch, metric):
    if epoch == 4:
        raise Interrupt


@pytest.mark.parametrize("method, preset", [("lightgcn", "faithful"), ("lightgcn-irllrec", "paper")])
def test_resume_from_checkpoint_gives_the_same_result(toy, tmp_path, method, preset):
    # IRLLRec carries its teacher's product between steps: the paper preset makes the matching term count
    config = resolve_config(method, "toy", preset=preset, overrides={"train": {**FAST["train"], "max_epochs": 8}})
    reference = train_run(config, toy, extras_loader=synthetic_extras, progress=False)
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(Interrupt):
        train_run(
            config,
            toy,
            extras_loader=synthetic_extras,
            progress=False,
            checkpoint=ckpt,
            on_validation=interrupt_at_epoch_4,
        )
    resumed = train_run(config, toy, extras_loader=synthetic_extras, progress=False, checkpoint=ckpt)
    assert resumed.record["metrics"] == reference.record["metrics"]
    assert resumed.history == reference.history  # every epoch's loss terms, to the last bit
    assert resumed.record["epochs_run"] == reference.record["epochs_run"]
    # the record names the code of both processes that trained it, and where the second one took over
    assert [part["from_epoch"] for part in resumed.record["trained_by"]] == [0, 5]
    assert all({"commit", "dirty"} <= part.keys() for part in resumed.record["trained_by"])


def test_a_checkpoint_of_other_inputs_is_not_resumed(toy, tmp_path, caplog):
    config = resolve_config("lightgcn", "toy", overrides={"train": {**FAST["train"], "max_epochs": 8}})
    ckpt = tmp_path / "run.ckpt"
    toy = dataclasses.replace(toy, checksum="a" * 64)  # prepared datasets carry their checksum
    with pytest.raises(Interrupt):
        train_run(config, toy, progress=False, checkpoint=ckpt, on_validation=interrupt_at_epoch_4)
    other = dataclasses.replace(clustered_interactions(n_users=80, n_items=160, seed=4), checksum="b" * 64)
    fresh = train_run(config, other, progress=False)
    resumed = train_run(config, other, progress=False, checkpoint=ckpt)
    assert "ignoring checkpoint" in caplog.text
    assert resumed.record["metrics"] == fresh.record["metrics"]


def test_negative_sampler_never_returns_training_items(toy):
    sampler = NegativeSampler(toy)
    negatives = sampler.sample(np.random.default_rng(0))
    train = set(map(tuple, toy.train.tolist()))
    assert not any((u, n) in train for u, n in zip(sampler.users.tolist(), negatives.tolist()))
    assert negatives.min() >= 0 and negatives.max() < toy.n_items


def test_config_errors_are_clear():
    with pytest.raises(ConfigError, match=r"unknown lightgcn model key\(s\) \['layer'\]; valid keys"):
        resolve_config("lightgcn", "toy", overrides={"model": {"layer": 2}})
    with pytest.raises(ConfigError, match="invalid lightgcn model value"):
        resolve_config("lightgcn", "toy", overrides={"model": {"keep_rate": 1.5}})
    with pytest.raises(ConfigError, match="must look like model"):
        parse_overrides(["layers=2"])
    with pytest.raises(KeyError, match="unknown method 'nope'; registered methods: .*lightgcn"):
        resolve_config("nope", "toy")
    with pytest.raises(ConfigError, match="has no preset 'paper'"):
        resolve_config("lightgcn", "toy", preset="paper")


@pytest.mark.parametrize(
    "train, message",
    [
        ({"select_metric": "ndcg@50"}, r"select_metric 'ndcg@50' is not one of the computed metrics"),
        ({"select_metric": "precision@20"}, r"is not one of the computed metrics \['recall@5'"),
        ({"ks": []}, "ks must be a non-empty list of positive cut-offs"),
        ({"ks": [0, 20]}, "ks must be a non-empty list of positive cut-offs"),
        ({"ks": [5, 10], "select_metric": "recall@20"}, r"computed metrics \['recall@5', 'recall@10', 'ndcg@5'"),
    ],
)
def test_evaluation_settings_are_checked_when_the_config_is_read(train, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("lightgcn", "toy", overrides={"train": train})


def test_deviations_name_every_change_from_the_reference():
    config = resolve_config("lightgcn", "amazon", overrides=parse_overrides(["model.layers=2", "train.lr=0.01"]))
    assert "model.layers=2 (reference 3)" in config.deviations
    assert "train.lr=0.01 (reference 0.001)" in config.deviations
    assert resolve_config("lightgcn", "amazon").deviations == ()


def test_a_cpu_only_dgl_is_named_with_the_command_that_installs_its_cuda_build(toy, monkeypatch):
    from recrepro.graph import dgl_has_cuda

    if dgl_has_cuda():
        pytest.skip("this DGL has CUDA")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # torch sees a GPU; DGL cannot use it
    config = resolve_config("lightgcn", "toy", device="cuda")
    with pytest.raises(TrainingError, match=r"built without CUDA.*pip install .*dgl==2.1.0\+cu121.*torch-2.2/cu121"):
        train_run(config, toy, progress=False)


def test_missing_cuda_is_a_clear_error(toy):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    config = resolve_config("lightgcn", "toy", device="cuda")
    with pytest.raises(TrainingError, match="no CUDA device"):
        train_run(config, toy, progress=False)


def test_regenerated_tables_do_not_make_the_code_dirty(tmp_path):
    """A study rewrites the shipped tables under results/; only changes to code or configuration are 'dirty'."""
    import subprocess

    from recrepro.provenance import git_commit

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table2.md").write_text("old\n")
    (tmp_path / "config.yaml").write_text("a: 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "init")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "results" / "table2.md").write_text("regenerated\n")
    assert git_commit(tmp_path)["dirty"] is False
    (tmp_path / "config.yaml").write_text("a: 2\n")
    assert git_commit(tmp_path)["dirty"] is True


def test_records_keep_the_command_line_without_machine_paths(tmp_path):
    from recrepro.provenance import portable_argv

    argv = [str(tmp_path / "recrepro" / "__main__.py"), "train", "--data", str(tmp_path / "resources" / "d"), "--x"]
    assert portable_argv(argv, root=tmp_path) == ["recrepro", "train", "--data", "resources/d", "--x"]
    assert portable_argv(["/usr/bin/recrepro", "--out", "/elsewhere/r.json"], root=tmp_path)[0] == "recrepro"
