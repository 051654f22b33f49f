"""The README's two set-up commands: CI runs the test command verbatim, and the main one ends with the target."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    quick_start = (REPO / "README.md").read_text().split("## Quick start")[1].split("\n## ")[0]
    return re.findall(r"```bash\n(.+?)\n```", quick_start)


def test_readme_shows_exactly_two_setup_commands():
    main, test = readme_commands()
    assert main.endswith("snakemake --cores all results/table2.md")
    assert "pytest" in test


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == readme_commands()[1]
