rule fetch:
    output:
        "resources/raw/{dataset}/verified.json",
    params:
        mirror=mirror_option,
    log:
        "logs/fetch/{dataset}.log",
    message:
        "Fetching and verifying {wildcards.dataset}"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro fetch {wildcards.dataset} {params.mirror} > {log} 2>&1"


rule prepare:
    input:
        "resources/raw/{dataset}/verified.json",
    output:
        "resources/datasets/{dataset}/meta.json",
    log:
        "logs/prepare/{dataset}.log",
    message:
        "Converting {wildcards.dataset} to the canonical format"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro prepare {wildcards.dataset} > {log} 2>&1"
