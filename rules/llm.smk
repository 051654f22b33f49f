rule llm_profiles:
    input:
        unpack(llm_inputs),
    output:
        f"{LLM}/item_profiles.jsonl",
        f"{LLM}/user_profiles.jsonl",
        f"{LLM}/profiles.report.json",
    params:
        runtime=runtime_options,
        data=subpath(input.data, parent=True),
        out=subpath(output[0], parent=True),
        settings=llm_settings,
        raw_text=raw_text_dir,
    threads: 2
    # first whenever it can run: most of the study waits for it, and a two-thread job would otherwise wait until
    # no one-thread job is running at all
    priority: 50
    log:
        "logs/llm/{dataset}/profiles.log",
    benchmark:
        "results/benchmarks/llm/{dataset}/profiles.tsv"
    message:
        "LLM profiles of every user and item of {wildcards.dataset}"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro {params.runtime} llm profiles {wildcards.dataset:q} --data {params.data:q} --out {params.out:q}"
        " --settings {params.settings} --raw-text {params.raw_text:q} > {log:q} 2>&1"


rule llm_intents:
    input:
        unpack(llm_inputs),
        profiles=expand(f"{LLM}/{{kind}}_profiles.jsonl", kind=("item", "user"), allow_missing=True),
    output:
        f"{LLM}/item_intents.jsonl",
        f"{LLM}/user_intents.jsonl",
        f"{LLM}/intents.report.json",
    params:
        runtime=runtime_options,
        data=subpath(input.data, parent=True),
        out=subpath(output[0], parent=True),
        settings=llm_settings,
        raw_text=raw_text_dir,
    threads: 2
    # first whenever it can run: most of the study waits for it, and a two-thread job would otherwise wait until
    # no one-thread job is running at all
    priority: 50
    log:
        "logs/llm/{dataset}/intents.log",
    benchmark:
        "results/benchmarks/llm/{dataset}/intents.tsv"
    message:
        "LLM intents of every user and item of {wildcards.dataset}"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro {params.runtime} llm intents {wildcards.dataset:q} --data {params.data:q} --out {params.out:q}"
        " --settings {params.settings} --raw-text {params.raw_text:q} > {log:q} 2>&1"


rule llm_embeddings:
    input:
        unpack(llm_inputs),
        texts=expand(f"{LLM}/{{kind}}_{{step}}.jsonl", kind=("item", "user"),
                     step=("profiles", "intents"), allow_missing=True),
    output:
        f"{LLM}/embeddings.npz",
        f"{LLM}/manifest.json",
    params:
        runtime=runtime_options,
        data=subpath(input.data, parent=True),
        out=subpath(output[0], parent=True),
        settings=llm_settings,
        raw_text=raw_text_dir,
    threads: 2
    # first whenever it can run: most of the study waits for it, and a two-thread job would otherwise wait until
    # no one-thread job is running at all
    priority: 50
    log:
        "logs/llm/{dataset}/embeddings.log",
    benchmark:
        "results/benchmarks/llm/{dataset}/embeddings.tsv"
    message:
        "Embedding the profiles and intents of {wildcards.dataset}"
    conda:
        "../environment.yml"
    shell:
        "python -m recrepro {params.runtime} llm embeddings {wildcards.dataset:q} --data {params.data:q} --out {params.out:q}"
        " --settings {params.settings} --raw-text {params.raw_text:q} > {log:q} 2>&1"
