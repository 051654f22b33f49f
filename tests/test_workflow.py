"""The Snakemake workflow: lint, dry run of the default target, and (slow) the default pipeline end to end."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the project's workflow with ``workdir`` as working directory, in this interpreter's environment."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args],
                          capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path


def test_lint_is_clean(workdir):
    out = snakemake(workdir, "--lint")
    assert "Congratulations, your workflow is in a good condition" in out.stdout + out.stderr


def test_dry_run_of_default_target(workdir):
    out = snakemake(workdir, "-n", "results/table2.md")
    text = out.stdout + out.stderr
    stats = dict(line.split() for line in text.split("Job stats:")[1].split("total")[0].splitlines()[3:] if line.strip())
    assert stats == {"fetch": "1", "prepare": "1", "train": "1", "table2": "1"}
    assert "results/runs/ml-100k/lightgcn/seed2023.json" in text


def test_invalid_config_is_rejected(workdir):
    out = snakemake(workdir, "-n", "results/table2.md", "--config", "device=gpu", check=False)
    assert out.returncode != 0
    assert "device" in out.stdout + out.stderr


@pytest.mark.slow
def test_default_pipeline_end_to_end(workdir):
    snakemake(workdir, "--cores", "2", "results/table2.md")
    table = (workdir / "results" / "table2.md").read_text()
    assert "| LightGCN" in table and "ml-100k R@20" in table
    record = json.loads((workdir / "results/runs/ml-100k/lightgcn/seed2023.json").read_text())
    assert record["metrics"]["test"]["recall@20"] > 0.2  # far above a random scorer (~0.02) on ml-100k
    assert record["dataset_sha256"] == json.loads(
        (workdir / "resources/datasets/ml-100k/meta.json").read_text())["interactions_sha256"]
    assert {"git", "packages", "python"} <= set(record["provenance"])
    assert (workdir / "results/runs/ml-100k/lightgcn/seed2023.users.npz").is_file()
    assert (workdir / "results/benchmarks/train/ml-100k/lightgcn/seed2023.tsv").is_file()
    rerun = snakemake(workdir, "--cores", "2", "results/table2.md")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
