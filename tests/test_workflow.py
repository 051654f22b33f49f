"""The Snakemake workflow: lint, dry run of the default target, and (slow) the default pipeline end to end."""

import json

import pytest
import yaml
from workflow import REPO, new_workdir, quick_configs, run_or_show_log, snakemake


@pytest.fixture
def workdir(tmp_path):
    return new_workdir(tmp_path)


def test_lint_is_clean(workdir):
    out = snakemake(workdir, "--lint")
    assert "Congratulations, your workflow is in a good condition" in out.stdout + out.stderr


def test_dry_run_of_default_target(workdir):
    out = snakemake(workdir, "-n", "results/table2.md")
    text = out.stdout + out.stderr
    stats = {
        rule: int(n)
        for rule, n in (
            line.split() for line in text.split("Job stats:")[1].split("total")[0].splitlines()[3:] if line.strip()
        )
    }
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    variants = {**config["variants"], **config["ablations"]}
    tuned = sum(1 for v in variants.values() if "params_from" not in v)  # ablations reuse the full model's
    assert stats == {
        "fetch": 1,
        "prepare": 1,
        "llm_profiles": 1,
        "llm_intents": 1,
        "llm_embeddings": 1,
        "tune_study": tuned,
        "tune_worker": tuned * config["tuning"]["workers"],
        "tune_best": tuned,
        "train": len(variants) * len(config["seeds"]),
        "table1": 1,
        "table2": 1,
        "table3": 1,
        "sparsity": 1,
        "efficiency": 1,
        "claims": 1,
    }
    assert "results/runs/ml-100k/lightgcn/seed2023.json" in text


def test_invalid_config_is_rejected(workdir):
    out = snakemake(workdir, "-n", "results/table2.md", "--config", "device=gpu", check=False)
    assert out.returncode != 0
    assert "device" in out.stdout + out.stderr


def test_a_name_in_the_config_that_is_not_a_name_is_rejected_before_any_job(workdir):
    evil = "variants={x: {method: 'lightgcn; touch PWNED'}}"
    out = snakemake(
        workdir, "-n", "results/table2.md", "--config", "seeds=[1]", "datasets=[ml-100k]", evil, check=False
    )
    assert out.returncode != 0
    assert "variants.x.method = 'lightgcn; touch PWNED' is not allowed" in out.stdout + out.stderr
    assert not (workdir / "PWNED").exists()


def test_config_values_reach_shell_commands_quoted(workdir):
    out = snakemake(
        workdir,
        "-n",
        "-p",
        "results/runs/ml-100k/lightgcn/seed2023.json",
        "--config",
        "tune=false",
        "common_set=['train.lr=0.001; touch PWNED']",
        "mirror=/data/my mirror",
    )
    text = out.stdout + out.stderr
    assert "--set 'train.lr=0.001; touch PWNED'" in text and "--mirror '/data/my mirror'" in text
    assert not (workdir / "PWNED").exists()


@pytest.mark.parametrize("cores, threads, exclusive", [("2", "2", True), ("2", "1", False), ("4", "2", False)])
def test_a_job_runs_exclusive_exactly_when_its_threads_are_every_core(workdir, cores, threads, exclusive):
    out = snakemake(
        workdir, "-n", "-p", "results/runs/ml-100k/lightgcn/seed2023.json", "--cores", cores,
        "--config", "tune=false", f"threads={threads}",
    )  # fmt: skip
    commands = [line for line in (out.stdout + out.stderr).splitlines() if "python -m recrepro --threads" in line]
    train = next(line for line in commands if " train " in line)
    assert f"--threads {threads}" in train
    assert ("--exclusive" in train) == exclusive


@pytest.mark.parametrize(
    "setting, message",
    [
        ("seed=[1]", "seed is not a setting; did you mean seeds?"),
        ("seeds=5", "seeds must be of type array"),
        ("tuning={trial: 3}", "tuning.trial is not a setting; did you mean tuning.trials?"),
        ("llm={modle: x}", "llm.modle is not a setting; did you mean llm.model?"),
        ("tune=maybe", "tune must be of type boolean"),
    ],
)
def test_config_errors_name_the_key(workdir, setting, message):
    out = snakemake(workdir, "-n", "results/table2.md", "--config", setting, check=False)
    assert out.returncode != 0 and message in out.stdout + out.stderr


def test_a_tuning_storage_with_a_password_is_refused_before_any_job(workdir):
    url = "tuning={storage: 'postgresql://optuna:s3cret-pw@db.example.org/optuna'}"
    out = snakemake(workdir, "-n", "results/table2.md", "--config", url, check=False)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "tuning.storage: the URL contains a password" in text
    assert "PGPASSWORD or ~/.pgpass" in text and "s3cret-pw" not in text


def test_command_line_values_get_the_schema_types(workdir):
    from recrepro.workflow_config import check_config, load_schema

    schema = load_schema(REPO / "config" / "schema.yaml")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    # what Snakemake's --config parser hands over: every nested value a string
    config.update(
        tune="false",
        seeds=["1", "2"],
        llm={"model": "openai/x", "api_base": "null", "max_concurrency": "4", "use_shipped_cache": "false"},
    )
    checked = check_config(config, schema)
    assert checked["tune"] is False and checked["seeds"] == [1, 2]
    assert checked["llm"]["api_base"] is None and checked["llm"]["max_concurrency"] == 4
    assert checked["llm"]["use_shipped_cache"] is False and checked["llm"]["temperature"] == 0  # default filled


def test_a_configured_api_key_variable_must_be_set(workdir, monkeypatch):
    monkeypatch.delenv("RECREPRO_TEST_KEY", raising=False)
    out = snakemake(workdir, "-n", "results/table2.md", "--config", "llm={api_key_env: RECREPRO_TEST_KEY}", check=False)
    assert out.returncode != 0 and "RECREPRO_TEST_KEY" in out.stdout + out.stderr
    monkeypatch.setenv("RECREPRO_TEST_KEY", "sk-test")
    assert (
        snakemake(workdir, "-n", "results/table2.md", "--config", "llm={api_key_env: RECREPRO_TEST_KEY}").returncode
        == 0
    )


@pytest.mark.slow
@pytest.mark.timeout(1200)  # about 2 minutes on a 2-core CPU
def test_reported_metrics_do_not_drift(workdir):
    """CI regression: the small deterministic configuration reproduces the committed metrics."""
    run_or_show_log(
        workdir,
        "logs/tables/regression.log",
        "--cores",
        "2",
        "results/regression.md",
        "--configfile",
        str(REPO / "config" / "regression.yaml"),
    )
    assert "within" in (workdir / "results" / "regression.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the session's quick study runs in this test's setup unless the SLURM test ran it first
def test_default_pipeline_end_to_end(quick_study):
    """Every rule of the default study on ml-100k, with the quick budget of config/quick.yaml."""
    results = quick_study / "results"
    table2 = (results / "table2.md").read_text()
    for label in (
        "| LightGCN",
        "+RLMRec-Con",
        "+RLMRec-Gen",
        "+IRLLRec (faithful)",
        "+IRLLRec (paper weights)",
        "| DCCF",
        "| KGIN",
        "## Improvement of each add-on over its backbone",
        "Seeds: 2023, 2024",
        "2 trials per method",
        "train.max_epochs=6 (reference 3000)",
        "smollm2-135m-instruct",
    ):
        assert label in table2, label
    assert "w/o IA & ITM" in (results / "table3.md").read_text()
    assert (results / "sparsity.png").stat().st_size > 10_000 and "Q1" in (results / "sparsity.md").read_text()
    assert "| KGIN" in (results / "efficiency.md").read_text()
    claims = (results / "claims.md").read_text()
    assert claims.startswith("# Does IRLLRec do what the paper claims?") and "**Decision rule.**" in claims
    for number in range(1, 6):
        assert f"\n## {number}. " in claims, number
    assert "[claims.md](claims.md)" in table2

    llm = quick_study / "resources" / "llm" / "ml-100k"
    for step in ("profiles", "intents"):  # restored from the shipped cache: no model call
        assert json.loads((llm / f"{step}.report.json").read_text())["usage"]["calls"] == 0
    record = json.loads((results / "runs/ml-100k/lightgcn-irllrec/seed2023.json").read_text())
    assert record["tuning"]["budget"]["trials"] == 2 and "text" in record["side_inputs"]
    assert {"git", "packages", "python"} <= set(record["provenance"])
    assert (
        record["dataset_sha256"]
        == json.loads((quick_study / "resources/datasets/ml-100k/meta.json").read_text())["interactions_sha256"]
    )

    rerun = snakemake(quick_study, "--cores", "2", "results/table2.md", *quick_configs(quick_study))
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
