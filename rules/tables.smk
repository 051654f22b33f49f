rule table1:
    input:
        expand(f"{DATA}/meta.json", dataset=DATASETS),
    output:
        "results/table1.md",
    log:
        "logs/tables/table1.log",
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro table1 {input:q} --out {output:q} > {log:q} 2>&1"


rule table3:
    input:
        table3_runs,
    output:
        "results/table3.md",
    params:
        variants=table3_variants,
        tuning=tuning_json,
    log:
        "logs/tables/table3.log",
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro table3 {input:q} --variants {params.variants} {params.tuning} --out {output:q} > {log:q} 2>&1"


rule efficiency:
    input:
        all_runs,
    output:
        "results/efficiency.md",
    params:
        variants=all_variants,
    log:
        "logs/tables/efficiency.log",
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro efficiency {input:q} --variants {params.variants} --out {output:q} > {log:q} 2>&1"


rule sparsity:
    input:
        runs=table2_runs,
        data=expand(f"{DATA}/meta.json", dataset=DATASETS),
    output:
        table="results/sparsity.md",
        plot="results/sparsity.png",
    params:
        variants=table2_variants,
        data=dataset_dirs,
    log:
        "logs/tables/sparsity.log",
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro sparsity {input.runs:q} --variants {params.variants} --data {params.data:q}"
        " --plot {output.plot:q} --out {output.table:q} > {log:q} 2>&1"


rule claims:
    input:
        runs=all_runs,
        data=expand(f"{DATA}/meta.json", dataset=DATASETS),
    output:
        "results/claims.md",
    params:
        variants=table2_variants,
        ablations=ablation_variants,
        roles=claim_roles,
        tuning=tuning_json,
        data=dataset_dirs,
    log:
        "logs/tables/claims.log",
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro claims {input.runs:q} --variants {params.variants} --ablations {params.ablations}"
        " --roles {params.roles} {params.tuning} --data {params.data:q} --out {output:q} > {log:q} 2>&1"


rule table2:
    input:
        runs=table2_runs,
        others=[
            "results/table1.md",
            "results/table3.md",
            "results/sparsity.md",
            "results/efficiency.md",
            "results/claims.md",
        ],
    output:
        "results/table2.md",
    params:
        variants=table2_variants,
        tuning=tuning_json,
    log:
        "logs/tables/table2.log",
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro table2 {input.runs:q} --variants {params.variants} {params.tuning}"
        " --claims claims.md --see-also table1.md table3.md sparsity.md efficiency.md fidelity.md"
        " --out {output:q} > {log:q} 2>&1"


rule regression:
    input:
        table2_runs,
    output:
        "results/regression.md",
    params:
        expected=EXPECTED_METRICS,
    log:
        "logs/tables/regression.log",
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro regression check {input:q} --expected {params.expected:q} --out {output:q} > {log:q} 2>&1"
