"""recrepro workflow: fetch -> prepare -> LLM profiles -> intents -> embeddings -> tune (Optuna) -> train
(variant x dataset x seed) -> tables (table1, table2, table3, sparsity, efficiency, reference comparison).

    snakemake --cores all results/table2.md
"""

from snakemake.utils import min_version

min_version("9.0")


# The default experiment, unless a complete one is given with --configfile (such as config/regression.yaml);
# --config key=value overrides apply on top of either.
if "variants" not in config:

    configfile: "config/config.yaml"


include: "rules/common.smk"


# A hosted LLM provider's key must be in the environment (never in the config); assert it up front.
if config["llm"].get("api_key_env"):

    envvars:
        config["llm"]["api_key_env"],

include: "rules/data.smk"
include: "rules/llm.smk"
include: "rules/tune.smk"
include: "rules/train.smk"
include: "rules/tables.smk"
include: "rules/fidelity.smk"


rule all:
    default_target: True
    input:
        "results/table2.md",
