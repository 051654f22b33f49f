"""recrepro workflow: fetch -> prepare -> train (variant x dataset x seed) -> tables.

    snakemake --cores all results/table2.md
"""

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/tables.smk"


rule all:
    default_target: True
    input:
        "results/table1.md",
        "results/table2.md",
