# The fidelity matrix (config/fidelity.yaml): runs at the reference hyperparameters on the inputs the official code
# was run on, and results/fidelity.md next to the official code's numbers (config/reference_numbers.yaml).
# Committed run records are kept (ancient): `--forcerun fidelity_run` reruns them.
rule stand_in_text:
    input:
        f"{DATA}/meta.json",
    output:
        f"{STAND_IN}/manifest.json",
    params:
        data=subpath(input[0], parent=True),
        out=subpath(output[0], parent=True),
    log:
        "logs/stand-in/{dataset}.log",
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro stand-in-text {wildcards.dataset:q} --data {params.data:q} --out {params.out:q} > {log:q} 2>&1"


rule fidelity_run:
    input:
        unpack(fidelity_inputs),
    output:
        "results/fidelity/{dataset}/{variant}/seed{seed}.json",
    params:
        runtime=runtime_options,
        data=subpath(input.data, parent=True),
        options=fidelity_options,
        device=config["device"],
    wildcard_constraints:
        dataset="|".join(FIDELITY["datasets"]),
        variant=r"[a-z0-9][a-z0-9_-]*",
    threads: config["threads"]
    log:
        "logs/fidelity/{dataset}/{variant}/seed{seed}.log",
    benchmark:
        "results/benchmarks/fidelity/{dataset}/{variant}/seed{seed}.tsv"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro {params.runtime} train {params.options} --dataset {wildcards.dataset:q}"
        " --seed {wildcards.seed} --device {params.device:q} --data {params.data:q} --resume --out {output:q} > {log:q} 2>&1"


rule fidelity:
    input:
        records=ancient(FIDELITY_RECORDS),
        reference="config/reference_numbers.yaml",
    output:
        table="results/fidelity.md",
        plot="results/fidelity-curves.png",
    log:
        "logs/tables/fidelity.log",
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro fidelity {input.records:q} --reference {input.reference:q}"
        " --plot {output.plot:q} --out {output.table:q} > {log:q} 2>&1"
