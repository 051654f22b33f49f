"""Structure that the rest relies on: reporting and the job graph stay free of torch and DGL, and the workflow's
static reading of method declarations agrees with the imported registry."""

import subprocess
import sys
from pathlib import Path

import pytest

from recrepro.registry import declared_requirements, get_method, list_methods

REPO = Path(__file__).resolve().parent.parent
PROBE = """
import sys
argv = sys.argv[1:]
try:
    if argv[0] == "snakemake":
        import snakemake.cli
        sys.argv = argv
        snakemake.cli.main()
    else:
        from recrepro.cli import main
        main(argv[1:])
except SystemExit:
    pass
print("HEAVY", sorted(m for m in ("torch", "dgl") if m in sys.modules))
"""


def test_the_workflow_reads_method_declarations_without_importing_them():
    assert declared_requirements() == {name: get_method(name).requires for name in list_methods()}


def _heavy_modules(args, cwd):
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=cwd)
    line = next(line for line in out.stdout.splitlines() if line.startswith("HEAVY"))
    return line, out


@pytest.mark.parametrize(
    "args",
    [
        ["recrepro", "fidelity", "--reference", str(REPO / "config" / "reference_numbers.yaml"), "--out", "f.md"],
        ["recrepro", "regression", "check", "missing.json", "--expected", "missing.json"],
        ["recrepro", "table2", "missing.json", "--variants", "{}", "--out", "t.md"],
    ],
    ids=["fidelity", "regression", "table2"],
)
def test_reporting_commands_do_not_import_torch_or_dgl(args, tmp_path):
    line, out = _heavy_modules(args, tmp_path)
    assert line == "HEAVY []", out.stderr[-2000:]


def test_building_the_job_graph_does_not_import_torch_or_dgl(tmp_path):
    import shutil

    shutil.copytree(REPO / "config", tmp_path / "config")
    line, out = _heavy_modules(["snakemake", "-s", str(REPO / "Snakefile"), "-n", "results/table2.md"], tmp_path)
    assert "This was a dry-run" in out.stdout + out.stderr, out.stderr[-2000:]
    assert line == "HEAVY []"
