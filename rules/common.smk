import json
import os
import shlex

from snakemake.utils import validate

# litellm must not fetch its cost map over the network on import (any rule may import it)
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("DGLBACKEND", "pytorch")

validate(config, "../config/schema.yaml")

# Jobs run `python -m recrepro` in the active environment (the project's venv, or the conda environment made
# from environment.yml, which every rule names as its software environment).
DATASETS = config["datasets"]
SEEDS = config["seeds"]
VARIANTS = config["variants"]


wildcard_constraints:
    dataset="|".join(DATASETS),
    variant="|".join(VARIANTS),
    seed=r"\d+",


def mirror_option(wildcards):
    """Command-line option naming the configured mirror, if any."""
    return f"--mirror {shlex.quote(config['mirror'])}" if config.get("mirror") else ""


def variant_options(wildcards):
    """Command-line options that select a variant's method, preset and overrides."""
    variant = VARIANTS[wildcards.variant]
    options = [f"--method {variant['method']}", f"--preset {variant.get('preset', 'faithful')}",
               f"--variant {wildcards.variant}"]
    options += [f"--set {shlex.quote(item)}" for item in variant.get("set", [])]
    return " ".join(options)


def run_records(wildcards=None):
    """Every run record of the configured variants, datasets and seeds."""
    return expand("results/runs/{dataset}/{variant}/seed{seed}.json", dataset=DATASETS, variant=VARIANTS,
                  seed=SEEDS)


def variants_json(wildcards=None):
    """The variants (row order and labels) for the table generator, as a shell-quoted JSON argument."""
    return shlex.quote(json.dumps(VARIANTS))
