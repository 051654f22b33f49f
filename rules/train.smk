rule train:
    input:
        "resources/datasets/{dataset}/meta.json",
    output:
        record="results/runs/{dataset}/{variant}/seed{seed}.json",
        per_user="results/runs/{dataset}/{variant}/seed{seed}.users.npz",
    params:
        data=subpath(input[0], parent=True),
        variant=variant_options,
        device=config["device"],
    log:
        "logs/train/{dataset}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{variant}/seed{seed}.tsv"
    message:
        "Training {wildcards.variant} on {wildcards.dataset} (seed {wildcards.seed})"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro train {params.variant} --dataset {wildcards.dataset} --seed {wildcards.seed}"
        " --device {params.device} --data {params.data} --out {output.record} > {log} 2>&1"
