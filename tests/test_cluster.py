"""Beyond one machine, for real (slow): tuning workers sharing an Optuna study on a PostgreSQL server, and the
SLURM profile submitting the quick study to a one-node SLURM cluster. Both services run on loopback
(tests/services.py)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from helpers import clustered_interactions, write_canonical, write_card
from services import postgres_server, slurm_cluster, wait_for
from workflow import REPO, new_workdir, quick_configs

from recrepro.config import read_best_summary
from recrepro.tuning import open_storage, study_name

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _trials(url: str, study_dir: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study_name("lgcn", "toy"), storage=open_storage(url, study_dir)).trials


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_workers_share_a_postgresql_study_and_survive_a_kill(tmp_path, monkeypatch):
    password = f"pw-{secrets.token_hex(12)}"
    with postgres_server("optuna", password, "optuna") as url:
        assert password not in url
        toy = clustered_interactions(n_users=30, n_items=50, seed=2)
        toy.name = "toy"
        write_card(tmp_path / "cards", toy, {"trn_mat.pkl": "0" * 64}, "http://x.invalid")
        write_canonical(toy, tmp_path / "data")
        monkeypatch.setenv("RECREPRO_CARDS", str(tmp_path / "cards"))
        monkeypatch.setenv("PGPASSWORD", password)  # the only place the password is given: libpq reads it
        study_dir, logs = tmp_path / "study", tmp_path / "logs"
        logs.mkdir()
        tune = [sys.executable, "-m", "recrepro", "tune"]
        common = ["--variant", "lgcn", "--method", "lightgcn", "--dataset", "toy", "--trials", "4", "--storage", url,
                  "--study-dir", str(study_dir)]  # fmt: skip
        # slow enough trials to be caught running: four validations 400 epochs apart
        training = ["--workers", "2", "--data", str(tmp_path / "data"), "--set", "train.max_epochs=1600",
                    "--set", "train.test_step=400", "--set", "train.batch_size=256"]  # fmt: skip

        def start(worker: int, attempt: str) -> subprocess.Popen:
            log = open(logs / f"worker{worker}-{attempt}.log", "w")  # noqa: SIM115 (closed with the process)
            out = ["--worker", str(worker), "--out", str(tmp_path / f"w{worker}.json")]
            return subprocess.Popen([*tune, "worker", *common, *training, *out], stdout=log, stderr=subprocess.STDOUT)

        subprocess.run([*tune, "create", *common, "--out", str(tmp_path / "study.json")], check=True)
        first, second = start(0, "first"), start(1, "first")
        running = wait_for(
            lambda: [
                t for t in _trials(url, study_dir)
                if t.state == optuna.trial.TrialState.RUNNING and t.user_attrs.get("worker") == 1
            ],
            "worker 1 to be running a trial",
        )  # fmt: skip
        second.send_signal(signal.SIGKILL)  # killed mid-trial: its trial stays RUNNING in the database
        second.wait()
        assert first.wait(timeout=600) == 0, (logs / "worker0-first.log").read_text()
        resumed = start(1, "resumed")
        assert resumed.wait(timeout=600) == 0, (logs / "worker1-resumed.log").read_text()
        subprocess.run([*tune, "best", *common, "--out", str(tmp_path / "best.yaml")], check=True)

        trials = {t.number: t for t in _trials(url, study_dir)}
        finished = [t for t in trials.values() if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL]
        assert len(finished) == 4, [(t.number, t.state) for t in trials.values()]  # the budget is exact
        assert trials[running[0].number].state == optuna.trial.TrialState.FAIL  # the killed worker's trial
        # whichever worker claims a place next finds the dead worker's trial and fails it (worker 0 if it was still
        # running, the restarted worker 1 otherwise): exactly once
        stale = [n for w in (0, 1) for n in json.loads((tmp_path / f"w{w}.json").read_text())["failed_stale"]]
        assert stale == [running[0].number], stale
        best = read_best_summary(tmp_path / "best.yaml")
        assert best["trials"]["finished"] == 4 and best["trials"]["fail"] == 1 and best["overrides"]["model"]
        assert not (study_dir / "journal.log").exists()  # everything went to the database
        written = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert written and not [p for p in written if password.encode() in p.read_bytes()]
        print(f"PostgreSQL study: {best['trials']}")  # pytest -rP shows it


def _sacct(env: dict[str, str]) -> list[dict[str, str]]:
    fields = ["JobIDRaw", "JobName", "State", "Comment", "ExitCode", "Elapsed"]
    out = subprocess.run(
        ["sacct", "-X", "-a", "--parsable2", "--noheader", f"--format={','.join(fields)}", "--starttime", "now-1days"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]


def _queue(env: dict[str, str]) -> list[tuple[str, str]]:
    """(job id, comment) of the running jobs; sacct records a job's comment only when the job ends."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], capture_output=True, text=True, env=env, check=True
    ).stdout
    return [tuple(line.split("|", 1)) for line in out.splitlines() if "|" in line]


def _metrics(workdir: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(workdir)): json.loads(p.read_text())["metrics"]
        for p in sorted((workdir / "results" / "runs").rglob("seed*.json"))
    }


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_the_slurm_profile_runs_the_quick_study_on_a_slurm_cluster(tmp_path, quick_study):
    with slurm_cluster(account="recrepro") as env:
        workdir = new_workdir(tmp_path)
        env = {**env, "USER": "root" if os.geteuid() == 0 else os.environ.get("USER", "")}
        # what a laptop cluster needs on top of the profile: its partition and account, no GPU, 1 CPU per job
        overrides = [
            "--default-resources", "slurm_partition=debug", "slurm_account=recrepro", "runtime=60", "mem_mb=2000",
            "--set-resources", "train:gpu=0", "tune_worker:gpu=0",
            "--set-threads", "train=1", "tune_worker=1", "--slurm-init-seconds-before-status-checks", "5",
        ]  # fmt: skip
        args = ["results/table2.md", "--workflow-profile", str(REPO / "profiles" / "slurm"), *overrides,
                *quick_configs(workdir)]  # fmt: skip
        victim = workdir / "results/runs/ml-100k/kgin/seed2023.ckpt"  # KGIN: the slowest training of the study
        started = time.monotonic()
        run = subprocess.Popen(
            [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"},
        )  # fmt: skip
        comment = "rule_train_wildcards_ml-100k_kgin_2023"  # how the plugin names the job: rule and wildcards

        def running_after_checkpoint() -> list[str] | bool:
            if run.poll() is not None:
                return True  # the workflow ended: nothing left to catch
            return victim.exists() and [job for job, c in _queue(env) if c == comment]

        caught = wait_for(running_after_checkpoint, "KGIN's training job after its first checkpoint", timeout_s=3000)
        assert caught is not True, "KGIN's training job was not caught running after its first checkpoint"
        subprocess.run(["scancel", caught[0]], env=env, check=True)
        output, _ = run.communicate(timeout=3000)
        assert run.returncode == 0, output[-6000:]

        jobs = _sacct(env)
        rules = {j["Comment"].split("_wildcards_")[0].removeprefix("rule_") for j in jobs}
        assert {"fetch", "prepare", "tune_worker", "train", "table2"} <= rules, rules
        assert {j["State"].split()[0] for j in jobs} <= {"COMPLETED", "CANCELLED"}, jobs  # "CANCELLED by 0"
        retried = [j for j in jobs if j["Comment"] == comment]
        assert [j["State"].split()[0] for j in retried] == ["CANCELLED", "COMPLETED"], retried
        log = (workdir / "logs/train/ml-100k/kgin/seed2023.log").read_text()
        assert "resumed kgin from" in log, log[-2000:]  # the retry continued from the checkpoint
        assert _metrics(workdir) == _metrics(quick_study)  # the same numbers as the local run, bit for bit
        budget = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())["tuning"]["trials"]
        summaries = (workdir / "results" / "tuning").rglob("best.yaml")
        studies = {p.parent.name: read_best_summary(p)["trials"] for p in summaries}
        assert studies and all(t["finished"] == budget for t in studies.values()), studies  # exact on SLURM too
        # the record a reader wants (pytest -rP shows it): every job sacct saw, and each study's trials
        print(f"SLURM run: {time.monotonic() - started:.0f} s wall, {len(jobs)} jobs")
        print("\n".join(" | ".join(j.values()) for j in jobs))
        print("\n".join(f"study {name}: {counts}" for name, counts in sorted(studies.items())))
