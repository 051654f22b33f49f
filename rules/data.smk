rule fetch:
    output:
        f"{RAW}/verified.json",
    params:
        mirror=mirror_option,
        dest=subpath(output[0], parent=True),
    log:
        "logs/fetch/{dataset}.log",
    message:
        "Fetching and verifying {wildcards.dataset}"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro fetch {wildcards.dataset:q} --dest {params.dest:q} {params.mirror} > {log:q} 2>&1"


rule prepare:
    input:
        f"{RAW}/verified.json",
    output:
        f"{DATA}/meta.json",
    params:
        raw=subpath(input[0], parent=True),
        out=subpath(output[0], parent=True),
    log:
        "logs/prepare/{dataset}.log",
    message:
        "Converting {wildcards.dataset} to the canonical format"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro prepare {wildcards.dataset:q} --raw {params.raw:q} --out {params.out:q} > {log:q} 2>&1"


rule fetch_text:
    output:
        f"{RAW}/text/verified.json",
    params:
        mirror=mirror_option,
        dest=subpath(output[0], parent=True),
    log:
        "logs/fetch/{dataset}-text.log",
    message:
        "Fetching and verifying the released text of {wildcards.dataset}"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro fetch {wildcards.dataset:q} --text --dest {params.dest:q} {params.mirror} > {log:q} 2>&1"
