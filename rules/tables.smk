rule table1:
    input:
        expand("resources/datasets/{dataset}/meta.json", dataset=DATASETS),
    output:
        "results/table1.md",
    log:
        "logs/tables/table1.log",
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro table1 {input} --out {output} > {log} 2>&1"


rule table2:
    input:
        run_records,
    output:
        "results/table2.md",
    params:
        variants=variants_json,
    log:
        "logs/tables/table2.log",
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro table2 {input} --variants {params.variants} --out {output} > {log} 2>&1"
