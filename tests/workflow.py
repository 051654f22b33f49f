"""Running the project's Snakemake workflow from tests, in a scratch working directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUICK = ("config/config.yaml", "config/quick.yaml")  # the quick look at the whole default study


def new_workdir(path: Path) -> Path:
    """A working directory with a copy of the workflow's config (what a user's checkout would have)."""
    shutil.copytree(REPO / "config", path / "config")
    return path


def snakemake(
    workdir: Path, *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the project's workflow with ``workdir`` as working directory, in this interpreter's environment."""
    env = {**os.environ, **(env or {}), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args],
        capture_output=True,
        text=True,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def run_or_show_log(workdir: Path, log: str, *args: str, env: dict[str, str] | None = None) -> None:
    """Run the workflow; on failure, fail with the named job log and the end of Snakemake's output."""
    out = snakemake(workdir, *args, check=False, env=env)
    if out.returncode != 0:
        detail = (workdir / log).read_text() if (workdir / log).exists() else ""
        raise AssertionError(
            f"snakemake {' '.join(args)} failed:\n{detail}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        )


def quick_configs(workdir: Path) -> tuple[str, ...]:
    return ("--configfile", *(str(workdir / c) for c in QUICK))
