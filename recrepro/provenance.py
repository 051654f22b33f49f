"""Provenance attached to every result file: code version, package versions, platform, time."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from recrepro import runtime
from recrepro.paths import REPO_ROOT, shown

TRACKED_PACKAGES = (
    "torch",
    "dgl",
    "numpy",
    "scipy",
    "pandas",
    "optuna",
    "snakemake",
    "litellm",
    "tabulate",
    "transformers",
    "sentence-transformers",
    "recrepro",
)


GENERATED = "results"  # tracked, but written by every study: changes there do not make the code dirty


def git_commit(root: Path = REPO_ROOT) -> dict[str, object]:
    """The checkout's commit and whether its code or configuration has uncommitted changes (generated tables
    under ``results/`` do not count); ``unknown`` outside a git checkout."""

    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no", "--", ".", f":(exclude){GENERATED}"))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": dirty}


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def portable_argv(argv: list[str], root: Path = REPO_ROOT) -> list[str]:
    """The command line as records keep it: the program by its name, paths inside the checkout relative to it
    (a record names no machine's folders)."""

    program = Path(argv[0]).parent.name if Path(argv[0]).name == "__main__.py" else Path(argv[0]).name
    return [program, *(shown(arg, root) for arg in argv[1:])] if argv else []


def provenance() -> dict[str, object]:
    """Provenance of the current process."""
    return {
        "git": git_commit(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "argv": portable_argv(sys.argv),
        "runtime": runtime.settings(),
    }
