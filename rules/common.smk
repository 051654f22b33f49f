import json
import os
import shlex
import sys

import yaml

# importing recrepro sets the runtime defaults every job inherits (recrepro/runtime.py): no network request when
# litellm is imported, DGL's backend, sleeping OpenMP threads (unless a job holds every core: runtime_options)
from recrepro.data.cards import available_datasets, load_card
from recrepro.inputs import reads_llm_stage, unavailable
from recrepro.registry import declared_requirements
from recrepro.workflow_config import check_config, load_schema

# `--config key=value` values arrive as strings: coerce them to the schema's types, fill in the defaults, and
# report every problem by its key
_checked = check_config(dict(config), load_schema(os.path.join(workflow.basedir, "config", "schema.yaml")))
config.clear()
config.update(_checked)

# Jobs run `python -m recrepro` in the active environment (the project's venv, or the conda environment made
# from environment.yml, which every rule names as its software environment).
# Where each stage writes, under the workflow's working directory: every rule and input function uses these
RAW = "resources/raw/{dataset}"
DATA = "resources/datasets/{dataset}"
LLM = "resources/llm/{dataset}"
STAND_IN = "resources/stand-in/{dataset}"


def stage(pattern, dataset, *names):
    """A path under one of the stage folders above, for one dataset."""
    return os.path.join(pattern.format(dataset=dataset), *names)


DATASETS = config["datasets"]
SEEDS = config["seeds"]
TABLE2 = config["variants"]
_clash = set(TABLE2) & set(config["ablations"])
if _clash:
    raise ValueError(f"variant names used both in `variants` and `ablations`: {sorted(_clash)}")
if config["ablations"] and config["ablation_full"] not in TABLE2:
    raise ValueError(f"ablation_full {config['ablation_full']!r} must name a variant of `variants`")
for _name, _variant in {**TABLE2, **config["ablations"]}.items():
    if _variant.get("params_from", _name) not in TABLE2:
        raise ValueError(f"variant {_name}: params_from {_variant['params_from']!r} is not a variant of `variants`")
TABLE3 = {config["ablation_full"]: TABLE2[config["ablation_full"]], **config["ablations"]} if config["ablations"] else {}
VARIANTS = {**TABLE2, **config["ablations"]}
TUNING = config["tuning"]
EXPECTED_METRICS = os.path.join(workflow.basedir, "tests", "regression", "expected.json")


wildcard_constraints:
    dataset="|".join(available_datasets()),  # any dataset with a card: a target may name one `datasets` does not
    variant="|".join(VARIANTS),
    seed=r"\d+",
    worker=r"\d+",


def runtime_options(wildcards, threads):
    """`recrepro`'s process options for a job: its threads, and `--exclusive` when they are all the workflow's
    cores, so that no other job runs beside it and idle OpenMP threads may spin (recrepro/runtime.py)."""
    cores = workflow.resource_settings.cores
    return f"--threads {threads}" + (" --exclusive" if cores and threads >= cores else "")


def mirror_option(wildcards):
    """Command-line option naming the configured mirror, if any."""
    return shell_words("--mirror", config["mirror"]) if config.get("mirror") else ""


def shell_words(*words) -> str:
    """Words for a shell command, each quoted: no configuration value is ever read as shell syntax."""
    return " ".join(shlex.quote(str(word)) for word in words)


def method_words(name, variant, common_set=()):
    """`recrepro train` words that select a variant's method, preset and fixed overrides (`set`)."""
    words = ["--method", variant["method"], "--preset", variant.get("preset", "faithful"), "--variant", name]
    for item in [*common_set, *variant.get("set", [])]:
        words += ["--set", item]
    return words


def variant_options(wildcards):
    """Command-line options that select a variant's method, preset and fixed overrides."""
    return shell_words(*method_words(wildcards.variant, VARIANTS[wildcards.variant], config["common_set"]))


def tuning_options(wildcards=None):
    """The tuning budget, identical for every study."""
    words = ["--trials", TUNING["trials"], "--seed", TUNING["seed"], "--study-dir", study_dir(wildcards)]
    if TUNING["timeout_s"]:
        words += ["--timeout", TUNING["timeout_s"]]
    if TUNING["storage"]:
        words += ["--storage", TUNING["storage"]]
    return shell_words(*words)


def study_dir(wildcards):
    return f"results/tuning/{wildcards.dataset}/{wildcards.variant}"


def tuning_json(wildcards=None):
    """The tuning budget for table footers (an empty argument when tuning is off)."""
    if not config["tune"]:
        return ""
    budget = {key: TUNING[key] for key in ("trials", "workers", "max_epochs", "timeout_s")}
    return shell_words("--tuning", json.dumps(budget))


def _best_yaml(wildcards):
    """The tuning result a variant uses: its own, or that of the variant named by `params_from` (ablations
    keep the full model's hyperparameters and remove one term)."""
    source = VARIANTS[wildcards.variant].get("params_from", wildcards.variant)
    return f"results/tuning/{wildcards.dataset}/{source}/best.yaml"


def tuned_params(wildcards):
    """The tuning result a final run uses, when tuning is on."""
    return {"params": _best_yaml(wildcards)} if config["tune"] else {}


def params_option(wildcards):
    return shell_words("--params", _best_yaml(wildcards)) if config["tune"] else ""


METHOD_REQUIRES = declared_requirements()  # read from methods/ without importing them (no torch here)


def _requires(method):
    """The side inputs a method declares."""
    if method not in METHOD_REQUIRES:
        raise ValueError(f"unknown method {method!r}; methods: {', '.join(sorted(METHOD_REQUIRES))}")
    return METHOD_REQUIRES[method]


def _method_requires(variant):
    return _requires(VARIANTS[variant]["method"])


def _skip_reason(variant, dataset):
    """Why ``variant`` cannot run on ``dataset`` (None if it can)."""
    return unavailable(_method_requires(variant), load_card(dataset))


def _runnable_pairs():
    pairs = []
    for variant in VARIANTS:
        for dataset in DATASETS:
            reason = _skip_reason(variant, dataset)
            if reason is None:
                pairs.append((variant, dataset))
            else:
                print(f"recrepro: skipping {variant} on {dataset}: {reason}", file=sys.stderr)
    return pairs


RUNNABLE = _runnable_pairs()


def llm_inputs(wildcards):
    """The prepared dataset, and a released text source when the dataset's card names one."""
    inputs = {"data": stage(DATA, wildcards.dataset, "meta.json")}
    if load_card(wildcards.dataset).text.files:
        inputs["released"] = stage(RAW, wildcards.dataset, "text", "verified.json")
    return inputs


def raw_text_dir(wildcards):
    return stage(RAW, wildcards.dataset, "text")


def needs_text(wildcards):
    """Whether a training job reads the LLM stage's outputs."""
    return reads_llm_stage(_method_requires(wildcards.variant), load_card(wildcards.dataset))


def data_inputs(wildcards):
    """The prepared dataset, and the LLM stage's manifest for methods that read text."""
    inputs = {"data": stage(DATA, wildcards.dataset, "meta.json")}
    if needs_text(wildcards):
        inputs["text"] = stage(LLM, wildcards.dataset, "manifest.json")
    return inputs


def train_inputs(wildcards):
    return {**data_inputs(wildcards), **tuned_params(wildcards)}


def text_option(wildcards):
    return shell_words("--text", stage(LLM, wildcards.dataset)) if needs_text(wildcards) else ""


def run_records(variants):
    """Run records of ``variants`` on every dataset they can run on, for every seed."""
    return [f"results/runs/{dataset}/{variant}/seed{seed}.json" for variant, dataset in RUNNABLE if variant in variants
            for seed in SEEDS]


def table2_runs(wildcards=None):
    return run_records(TABLE2)


def table3_runs(wildcards=None):
    return run_records(TABLE3)


def all_runs(wildcards=None):
    return run_records(VARIANTS)


def variants_json(variants):
    """Variants (row order, labels, groups, baselines) for a table generator, as a shell-quoted JSON argument."""
    return shell_words(json.dumps(variants))


def table2_variants(wildcards=None):
    return variants_json(TABLE2)


def table3_variants(wildcards=None):
    return variants_json(TABLE3)


def all_variants(wildcards=None):
    return variants_json(VARIANTS)


def ablation_variants(wildcards=None):
    return variants_json(config["ablations"])


def claim_roles(wildcards=None):
    """The claims block: which variants are the proposed method and its rivals (results/claims.md)."""
    return shell_words(json.dumps(config["claims"]))


def dataset_dirs(wildcards=None):
    return [stage(DATA, dataset) for dataset in DATASETS]


def llm_settings(wildcards=None):
    """The LLM stage's settings as a shell-quoted JSON argument (it names the API key's variable, not the key)."""
    return shell_words(json.dumps(config["llm"]))


# ---------------------------------------------------------------------------- fidelity matrix (rules/fidelity.smk)

FIDELITY = yaml.safe_load(open(os.path.join(workflow.basedir, "config", "fidelity.yaml")))
FIDELITY_TEXT = {"llm": LLM, "stand-in": STAND_IN}


def fidelity_variant(wildcards):
    return FIDELITY["datasets"][wildcards.dataset]["variants"][wildcards.variant]


def fidelity_text_dir(wildcards):
    """The text folder a fidelity run reads, or None for a method that reads no text."""
    spec = FIDELITY["datasets"][wildcards.dataset]
    if not reads_llm_stage(_requires(fidelity_variant(wildcards)["method"]), load_card(wildcards.dataset)):
        return None
    return stage(FIDELITY_TEXT[spec["text"]], wildcards.dataset)


def fidelity_inputs(wildcards):
    inputs = {"data": stage(DATA, wildcards.dataset, "meta.json")}
    text = fidelity_text_dir(wildcards)
    if text:
        inputs["text"] = os.path.join(text, "manifest.json")
    return inputs


def fidelity_options(wildcards):
    text = fidelity_text_dir(wildcards)
    words = method_words(wildcards.variant, fidelity_variant(wildcards)) + (["--text", text] if text else [])
    return shell_words(*words)


FIDELITY_RECORDS = [
    f"results/fidelity/{dataset}/{name}/seed{seed}.json"
    for dataset, spec in FIDELITY["datasets"].items()
    for name, variant in spec["variants"].items()
    for seed in variant.get("seeds", FIDELITY["seeds"])
]
