"""The process runtime defaults: OpenMP's wait policy, the harness's default and a job's --exclusive."""

import os
import subprocess
import sys

import pytest

from recrepro import cli
from recrepro.provenance import provenance

POLICY, MARK = "OMP_WAIT_POLICY", "RECREPRO_DEFAULT_OMP_WAIT_POLICY"


def wait_policy_after_import(env: dict[str, str]) -> str:
    """OMP_WAIT_POLICY as a fresh process sees it after importing recrepro, started with ``env``."""
    base = {k: v for k, v in os.environ.items() if k not in (POLICY, MARK)}
    code = "import os, recrepro; print(os.environ.get('OMP_WAIT_POLICY'))"
    return subprocess.run(
        [sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_idle_threads_sleep_by_default_and_a_users_policy_wins():
    assert wait_policy_after_import({}) == "PASSIVE"
    assert wait_policy_after_import({POLICY: "ACTIVE"}) == "ACTIVE"


@pytest.mark.parametrize(
    "inherited, expected",
    [
        ({POLICY: "PASSIVE", MARK: "1"}, None),  # the harness's default, inherited from Snakemake's process
        ({POLICY: "PASSIVE"}, "PASSIVE"),  # the user's choice
        ({POLICY: "ACTIVE"}, "ACTIVE"),
        ({POLICY: "ACTIVE", MARK: "1"}, "ACTIVE"),  # set by the user after the default was inherited
    ],
)
def test_an_exclusive_job_drops_only_the_harness_default(monkeypatch, capsys, inherited, expected):
    for name in (POLICY, MARK):
        monkeypatch.delenv(name, raising=False)
    for name, value in inherited.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["--exclusive", "list"]) == 0
    assert os.environ.get(POLICY) == expected


def test_a_job_without_exclusive_keeps_the_default(monkeypatch, capsys):
    monkeypatch.setenv(POLICY, "PASSIVE")
    monkeypatch.setenv(MARK, "1")
    assert cli.main(["list"]) == 0
    assert os.environ[POLICY] == "PASSIVE"


@pytest.mark.parametrize("policy", ["PASSIVE", None])
def test_a_record_names_the_wait_policy_and_threads_it_ran_with(monkeypatch, policy):
    import torch

    monkeypatch.delenv(POLICY, raising=False)
    if policy:
        monkeypatch.setenv(POLICY, policy)
    settings = provenance()["runtime"]
    assert settings == {"cpu_threads": torch.get_num_threads(), "omp_wait_policy": policy or "OpenMP's default"}
