"""Shared fixtures. Slow tests (end-to-end pipeline) run only with --run-slow."""

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DGLBACKEND", "pytorch")

import pytest  # noqa: E402
from workflow import new_workdir, quick_configs, run_or_show_log  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run slow end-to-end tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def quick_study(tmp_path_factory):
    """The default study with the quick budget of config/quick.yaml, run once locally (2 cores) per session; the
    end-to-end test checks it and the SLURM test compares its own run of the same configuration with it."""
    workdir = new_workdir(tmp_path_factory.mktemp("quick-study"))
    run_or_show_log(workdir, "logs/tables/table2.log", "--cores", "2", "results/table2.md", *quick_configs(workdir))
    return workdir
