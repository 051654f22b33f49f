"""Where the project keeps things: cards in ``datasets/``, fetched and converted data in ``resources/``, results in
``results/``, all under the repository root by default (each can be moved with an environment variable). The
workflow passes explicit paths under its working directory instead."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cards_dir() -> Path:
    """Folder of dataset cards (``$RECREPRO_CARDS`` or ``<repo>/datasets``)."""
    return Path(os.environ.get("RECREPRO_CARDS", REPO_ROOT / "datasets"))


def resources_dir() -> Path:
    """Root of fetched and converted data (``$RECREPRO_RESOURCES`` or ``<repo>/resources``)."""
    return Path(os.environ.get("RECREPRO_RESOURCES", REPO_ROOT / "resources"))


def results_dir() -> Path:
    """Root of run records and tables written by the command line (``$RECREPRO_RESULTS`` or ``<repo>/results``)."""
    return Path(os.environ.get("RECREPRO_RESULTS", REPO_ROOT / "results"))


def run_record(dataset: str, variant: str, seed: int) -> Path:
    """Default path of one run's record."""
    return results_dir() / "runs" / dataset / variant / f"seed{seed}.json"


def llm_dir(dataset: str) -> Path:
    """Folder of one dataset's LLM-stage outputs (texts, embeddings, manifest, response cache)."""
    return resources_dir() / "llm" / dataset


def stand_in_dir(dataset: str) -> Path:
    """Folder of one dataset's stand-in text embeddings (implementation checks)."""
    return resources_dir() / "stand-in" / dataset


def raw_dir(dataset: str) -> Path:
    """Folder holding the verified downloads of one dataset."""
    return resources_dir() / "raw" / dataset


def canonical_dir(dataset: str) -> Path:
    """Folder holding one dataset in the harness's canonical format."""
    return resources_dir() / "datasets" / dataset


def inside(base: Path, relative: str | Path) -> Path:
    """``base / relative``, refusing any result that resolves outside ``base`` (``..``, absolute paths, links)."""
    base = Path(base)
    target = base / relative
    if not target.resolve().is_relative_to(base.resolve()):
        raise ValueError(f"{str(relative)!r} points outside {base}")
    return target


def shown(path: str | Path, root: Path = REPO_ROOT) -> str:
    """A path as records and reports show it: relative to the checkout when it lies inside it (they name no
    machine's folders), otherwise as given."""
    if Path(path).is_absolute() and Path(path).resolve().is_relative_to(root.resolve()):
        return str(Path(path).resolve().relative_to(root.resolve()))
    return str(path)
