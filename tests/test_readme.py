"""Every command in the README works as written.

Commands are taken from the README's ``bash`` blocks and from inline code that starts with a command name.
Snakemake commands run as dry runs (``-n``) in a scratch working directory, ``recrepro`` and benchmark commands
are parsed by their own argument parsers, and the set-up commands are checked against the Makefile and CI. A
command of a kind this file does not know how to check fails the test, so a new README command is checked too.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
COMMAND_NAMES = ("snakemake ", "recrepro ", "python benchmarks/", "make ", "pytest")


def readme_blocks() -> list[list[str]]:
    """The README's ``bash`` blocks, each as its list of command lines (continuations joined, comments dropped)."""
    blocks = []
    for body in re.findall(r"```bash\n(.*?)\n```", README, re.S):
        lines = [line for line in body.replace("\\\n", " ").splitlines() if line.strip() and not line.startswith("#")]
        blocks.append(lines)
    return blocks


def inline_commands() -> list[str]:
    """Inline code that is a whole command (not a syntax summary with ``<placeholders>`` or ``…``)."""
    spans = re.findall(r"(?<!`)`([^`\n]+)`(?!`)", README)
    return [s for s in spans if s.startswith(COMMAND_NAMES) and not re.search(r"<\w+>|…", s)]


def commands() -> list[tuple[str, dict[str, str]]]:
    """Every README command (comments dropped), with the environment variables its block exports before it."""
    found = []
    for block in readme_blocks():
        env: dict[str, str] = {}
        for line in block:
            if line.startswith("export "):
                env[line.split()[1].split("=")[0]] = "sk-readme-test"  # a placeholder value, never a key
                continue
            found += [(shlex.join(shlex.split(part, comments=True)), dict(env)) for part in line.split(" && ")]
    for span in inline_commands():
        found += [(shlex.join(shlex.split(part, comments=True)), {}) for part in span.split(" && ")]
    return found


def quick_start() -> list[str]:
    section = README.split("## Quick start")[1].split("\n## ")[0]
    return re.findall(r"```bash\n(.+?)\n```", section)


def test_readme_shows_exactly_two_setup_commands():
    main, test = quick_start()
    assert main.endswith("snakemake --cores all --forcerun table2 results/table2.md")
    assert "pytest" in test


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == quick_start()[1]


def test_commands_are_found():
    found = [c for c, _ in commands()]
    assert "snakemake --cores all --forcerun table2 results/table2.md" in found
    assert any(c.startswith("recrepro train") for c in found)
    assert any(c.startswith("python benchmarks/") for c in found)


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_parsed(parser, argv: list[str], command: str) -> None:
    try:
        parser.parse_args(argv)
    except SystemExit as err:  # argparse's way of rejecting arguments
        pytest.fail(f"README command does not parse: {command} (exit {err.code})")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("readme")
    shutil.copytree(REPO / "config", path / "config")
    return path


@pytest.mark.parametrize("command, env", commands(), ids=[c for c, _ in commands()])
def test_readme_command_works_as_written(command, env, workdir):
    words = shlex.split(command)
    if words[0] == "snakemake" and "profiles/slurm" in words:
        pytest.importorskip("snakemake_executor_plugin_slurm", reason="the SLURM executor: make cluster-env")
    if words[0] == "snakemake":
        proc = subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "-n", *words[1:]],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
        )
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    elif words[0] == "recrepro":
        from recrepro.cli import build_parser

        _check_parsed(build_parser(), words[1:], command)
    elif words[0] == "python" and words[1].startswith("benchmarks/"):
        _check_parsed(_load_script(REPO / words[1]).build_parser(), words[2:], command)
    elif words[0] == "make" and len(words) == 2:
        assert re.search(rf"^{re.escape(words[1])}:", (REPO / "Makefile").read_text(), re.M)
    elif words == [".", ".venv/bin/activate"]:
        assert "ln -sfn $(ENV_DIR) .venv" in (REPO / "Makefile").read_text()
    elif words[:2] == ["pip", "install"]:  # the GPU build of DGL: the one the harness's error message names
        from recrepro.graph import DGL_CUDA_INSTALL

        lock = (REPO / "requirements" / "lock.txt").read_text()
        dgl, torch = (re.search(rf"^{name}==(\d+\.\d+)", lock, re.M).group(1) for name in ("dgl", "torch"))
        assert command == shlex.join(shlex.split(DGL_CUDA_INSTALL))
        assert f"dgl=={dgl}." in command and f"/torch-{torch}/" in command
    elif words[0] == "pytest":
        assert set(words[1:]) <= {"--run-slow"}, command
    else:
        pytest.fail(f"no check for this README command: {command}")


def test_readme_datasets_agree_with_their_cards():
    """The dataset table names every card, and says which datasets have a text source as the cards do."""
    rows = dict(re.findall(r"^\| `([\w-]+)` \| (.+) \|$", README.split("## Datasets")[1].split("\n## ")[0], re.M))
    cards = {p.stem: yaml.safe_load(p.read_text()) for p in (REPO / "datasets").glob("*.yaml")}
    assert set(rows) == set(cards)
    for name, card in cards.items():
        has_text = bool(card.get("text", {}).get("available"))
        assert ("no text" in rows[name]) != has_text, f"{name}: README says {rows[name]!r}"
