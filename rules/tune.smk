rule tune_study:
    input:
        unpack(data_inputs),
    output:
        "results/tuning/{dataset}/{variant}/study.json",
    params:
        variant=variant_options,
        tuning=tuning_options,
    log:
        "logs/tune/{dataset}/{variant}/study.log",
    message:
        "Creating the tuning study of {wildcards.variant} on {wildcards.dataset}"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro tune create {params.variant} --dataset {wildcards.dataset:q} {params.tuning}"
        " --out {output:q} > {log:q} 2>&1"


rule tune_worker:
    input:
        unpack(data_inputs),
        study="results/tuning/{dataset}/{variant}/study.json",
    output:
        "results/tuning/{dataset}/{variant}/worker{worker}.json",
    params:
        runtime=runtime_options,
        variant=variant_options,
        tuning=tuning_options,
        data=subpath(input.data, parent=True),
        text=text_option,
        workers=TUNING["workers"],
        max_epochs=TUNING["max_epochs"],
        device=config["device"],
    threads: config["threads"]
    log:
        "logs/tune/{dataset}/{variant}/worker{worker}.log",
    benchmark:
        "results/benchmarks/tune/{dataset}/{variant}/worker{worker}.tsv"
    message:
        "Tuning {wildcards.variant} on {wildcards.dataset} (worker {wildcards.worker})"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro {params.runtime} tune worker {params.variant} --dataset {wildcards.dataset:q} {params.tuning}"
        " --worker {wildcards.worker} --workers {params.workers} --max-epochs {params.max_epochs}"
        " --device {params.device:q} --data {params.data:q} {params.text} --out {output:q} > {log:q} 2>&1"


rule tune_best:
    input:
        expand("results/tuning/{{dataset}}/{{variant}}/worker{worker}.json", worker=range(TUNING["workers"])),
    output:
        "results/tuning/{dataset}/{variant}/best.yaml",
    params:
        variant=variant_options,
        tuning=tuning_options,
    log:
        "logs/tune/{dataset}/{variant}/best.log",
    message:
        "Exporting the best hyperparameters of {wildcards.variant} on {wildcards.dataset}"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro tune best {params.variant} --dataset {wildcards.dataset:q} {params.tuning}"
        " --out {output:q} > {log:q} 2>&1"
