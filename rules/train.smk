rule train:
    input:
        unpack(train_inputs),
    output:
        record="results/runs/{dataset}/{variant}/seed{seed}.json",
        per_user="results/runs/{dataset}/{variant}/seed{seed}.users.npz",
    params:
        runtime=runtime_options,
        data=subpath(input.data, parent=True),
        text=text_option,
        tuned=params_option,
        variant=variant_options,
        device=config["device"],
    threads: config["threads"]
    log:
        "logs/train/{dataset}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{dataset}/{variant}/seed{seed}.tsv"
    message:
        "Training {wildcards.variant} on {wildcards.dataset} (seed {wildcards.seed})"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro {params.runtime} train {params.variant} --dataset {wildcards.dataset:q} --seed {wildcards.seed}"
        " --device {params.device:q} --data {params.data:q} {params.text} {params.tuned} --resume --out {output.record:q}"
        " > {log:q} 2>&1"
