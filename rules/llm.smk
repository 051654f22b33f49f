rule llm_profiles:
    input:
        "resources/datasets/{dataset}/meta.json",
    output:
        "resources/llm/{dataset}/item_profiles.jsonl",
        "resources/llm/{dataset}/user_profiles.jsonl",
        "resources/llm/{dataset}/profiles.report.json",
    params:
        data=subpath(input[0], parent=True),
        out=subpath(output[0], parent=True),
        settings=llm_settings,
    threads: 2
    log:
        "logs/llm/{dataset}/profiles.log",
    benchmark:
        "results/benchmarks/llm/{dataset}/profiles.tsv"
    message:
        "LLM profiles of every user and item of {wildcards.dataset}"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro --threads {threads} llm profiles {wildcards.dataset} --data {params.data} --out {params.out}"
        " --settings {params.settings} > {log} 2>&1"


rule llm_intents:
    input:
        "resources/datasets/{dataset}/meta.json",
        "resources/llm/{dataset}/item_profiles.jsonl",
        "resources/llm/{dataset}/user_profiles.jsonl",
    output:
        "resources/llm/{dataset}/item_intents.jsonl",
        "resources/llm/{dataset}/user_intents.jsonl",
        "resources/llm/{dataset}/intents.report.json",
    params:
        data=subpath(input[0], parent=True),
        out=subpath(output[0], parent=True),
        settings=llm_settings,
    threads: 2
    log:
        "logs/llm/{dataset}/intents.log",
    benchmark:
        "results/benchmarks/llm/{dataset}/intents.tsv"
    message:
        "LLM intents of every user and item of {wildcards.dataset}"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro --threads {threads} llm intents {wildcards.dataset} --data {params.data} --out {params.out}"
        " --settings {params.settings} > {log} 2>&1"


rule llm_embeddings:
    input:
        "resources/datasets/{dataset}/meta.json",
        "resources/llm/{dataset}/item_profiles.jsonl",
        "resources/llm/{dataset}/user_profiles.jsonl",
        "resources/llm/{dataset}/item_intents.jsonl",
        "resources/llm/{dataset}/user_intents.jsonl",
    output:
        "resources/llm/{dataset}/embeddings.npz",
        "resources/llm/{dataset}/manifest.json",
    params:
        data=subpath(input[0], parent=True),
        out=subpath(output[0], parent=True),
        settings=llm_settings,
    threads: 2
    log:
        "logs/llm/{dataset}/embeddings.log",
    benchmark:
        "results/benchmarks/llm/{dataset}/embeddings.tsv"
    message:
        "Embedding the profiles and intents of {wildcards.dataset}"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro --threads {threads} llm embeddings {wildcards.dataset} --data {params.data} --out {params.out}"
        " --settings {params.settings} > {log} 2>&1"
