"""The LLM stage of one dataset: profiles -> intents -> embeddings, written as the files methods read.

Outputs in the stage folder (``resources/llm/<dataset>/``), one row per entity in canonical id order:

- ``item_profiles.jsonl``, ``user_profiles.jsonl``, ``item_intents.jsonl``, ``user_intents.jsonl``:
  ``{"id", "status": "ok" | "fallback", "text", "answer"}``, where ``text`` is the embedded field;
- ``embeddings.npz``: ``user_profile``, ``item_profile``, ``user_intent``, ``item_intent`` (float32);
- ``manifest.json``: models, prompt versions, dataset checksum, output checksums, usage, failures.

Every file is written to a temporary name and renamed when complete, so a stopped stage (budget, failures,
interruption) never leaves a file that looks finished. The response cache (``cache.jsonl``) persists.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from recrepro.atomic import atomic_write, write_jsonl, write_text
from recrepro.data.canonical import InteractionData
from recrepro.data.cards import DatasetCard
from recrepro.data.fetch import sha256_file
from recrepro.llm.cache import ResponseCache
from recrepro.llm.client import LLMClient, LLMSettings, TextRequest, TextResult
from recrepro.llm.contexts import TextContexts, build_contexts
from recrepro.llm.prompts import load_prompt
from recrepro.llm.released import LEAKAGE_NOTE, load_released

log = logging.getLogger(__name__)

STEPS = {"profiles": "profile", "intents": "intent"}
KINDS = ("item", "user")
EMBEDDING_KEYS = {
    f"{kind}_{suffix}": f"{kind}_{step}.jsonl"
    for kind in KINDS
    for step, suffix in (("profiles", "profile"), ("intents", "intent"))
}


class TextStageFailed(RuntimeError):
    """More entities failed than the configured tolerance allows."""


def output_name(kind: str, step: str) -> str:
    return f"{kind}_{step}.jsonl"


def read_rows(path: Path) -> list[dict[str, Any]]:
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def build_requests(step: str, contexts: TextContexts, stage_dir: Path) -> list[TextRequest]:
    """Requests of one step for every item, then every user; intents also see the entity's profile."""
    requests = []
    for kind in KINDS:
        template = load_prompt(f"{contexts.prompt_prefix}{kind}_{STEPS[step]}")
        entity_contexts = contexts.items if kind == "item" else contexts.users
        profiles = read_rows(stage_dir / output_name(kind, "profiles")) if step == "intents" else None
        for index, context in enumerate(entity_contexts):
            if profiles is not None:
                context = {**context, "profile": profiles[index]["text"]}
            requests.append(TextRequest(f"{kind}:{index}", template, template.render(context)))
    return requests


def seed_shipped_cache(card: DatasetCard, settings: LLMSettings, cache: ResponseCache) -> int:
    """Add the dataset's shipped responses to the cache (after verifying their checksum) when they were made
    with the configured model; returns how many records were added."""
    from recrepro.paths import REPO_ROOT, inside

    shipped = card.text.shipped_cache
    if shipped is None or shipped.model != settings.model:
        return 0
    path = inside(REPO_ROOT, shipped.path)
    actual = sha256_file(path) if path.is_file() else "missing"
    if actual != shipped.sha256:
        raise RuntimeError(f"shipped response cache {path} has checksum {actual}, the card expects {shipped.sha256}")
    return cache.seed_from(path)


def _restore_released_profiles(contexts: TextContexts, data: InteractionData, stage_dir: Path) -> dict[str, Any]:
    """Write the published profiles as this stage's profile outputs (no model call)."""
    released = contexts.released
    for kind, profiles in (("item", released.item_profiles), ("user", released.user_profiles)):
        rows = [
            {
                "id": i,
                "status": "released",
                "text": p["profile"],
                "answer": {"summarization": p["profile"], "reasoning": p["reasoning"]},
            }
            for i, p in enumerate(profiles)
        ]
        write_jsonl(stage_dir / output_name(kind, "profiles"), rows)
    report = {
        "step": "profiles",
        "dataset": data.name,
        "model": "released (RLMRec data.zip)",
        "entities": data.n_items + data.n_users,
        "failed": 0,
        "failures": [],
        "usage": {"calls": 0},
        "prompt_versions": {},
        "leakage_note": LEAKAGE_NOTE,
    }
    write_text(stage_dir / "profiles.report.json", json.dumps(report, indent=1) + "\n")
    return report


def run_text_step(
    step: str,
    data: InteractionData,
    card: DatasetCard,
    stage_dir: Path,
    settings: LLMSettings,
    max_failure_fraction: float = 0.0,
    use_shipped_cache: bool = True,
    progress: bool | None = None,
    raw_text_dir: Path | None = None,
) -> dict[str, Any]:
    """Generate one step's texts for every user and item and write its output files; returns its report."""
    if step not in STEPS:
        raise ValueError(f"unknown LLM step {step!r}; steps: {sorted(STEPS)}")
    stage_dir.mkdir(parents=True, exist_ok=True)
    contexts = build_contexts(data, card, raw_text_dir)
    if step == "profiles" and contexts.released is not None:
        return _restore_released_profiles(contexts, data, stage_dir)
    cache = ResponseCache(stage_dir / "cache.jsonl")
    seeded = seed_shipped_cache(card, settings, cache) if use_shipped_cache else 0
    if seeded:
        log.info("added %d shipped responses to the cache", seeded)
    client = LLMClient(settings, cache, progress=progress)
    requests = build_requests(step, contexts, stage_dir)
    results = asyncio.run(client.complete(requests, desc=f"{data.name} {step}"))

    failures = [r for r in results if r.status != "ok"]
    report = {
        "step": step,
        "dataset": data.name,
        "model": settings.model,
        "entities": len(results),
        "failed": len(failures),
        "failures": [_failure(r) for r in failures],
        "usage": client.usage.as_dict(),
        "prompt_versions": {r.template.name: r.template.version for r in requests},
    }
    if len(failures) > max_failure_fraction * len(results):
        ids = ", ".join(r.entity for r in failures[:20]) + (" ..." if len(failures) > 20 else "")
        raise TextStageFailed(
            f"{step}: {len(failures)} of {len(results)} entities got no valid answer after "
            f"{settings.format_retries} correction turns ({ids}); the raw answers and the validation errors are in "
            f"{client.failures.path}, and they are asked again on the next run. Allowed: "
            f"{max_failure_fraction:.1%} (llm.max_failure_fraction). No output was written."
        )
    for kind in KINDS:
        rows = [
            _row(result, request, contexts, kind)
            for result, request in zip(results, requests)
            if request.entity.startswith(f"{kind}:")
        ]
        write_jsonl(stage_dir / output_name(kind, step), rows)
    write_text(stage_dir / f"{step}.report.json", json.dumps(report, indent=1) + "\n")
    log.info(
        "%s: %d entities, %d calls, %d cached, %d failed, $%.4f",
        step,
        len(results),
        client.usage.calls,
        client.usage.cached,
        len(failures),
        client.usage.cost_usd,
    )
    return report


def _failure(result: TextResult) -> dict[str, Any]:
    return {"entity": result.entity, "status": result.status, "error": result.error, "raw": result.raw}


def _row(result: TextResult, request: TextRequest, contexts: TextContexts, kind: str) -> dict[str, Any]:
    index = int(request.entity.split(":")[1])
    if result.status == "ok":
        return {
            "id": index,
            "status": "ok",
            "text": result.answer[request.template.embed_field],
            "answer": result.answer,
        }
    return {
        "id": index,
        "status": "fallback",
        "text": contexts.fallback(kind, index),
        "answer": None,
        "error": result.error,
    }


def run_embeddings(
    data: InteractionData,
    stage_dir: Path,
    settings: LLMSettings,
    progress: bool | None = None,
    card: DatasetCard | None = None,
    raw_text_dir: Path | None = None,
) -> dict[str, Any]:
    """Embed the profile and intent texts and write ``embeddings.npz`` and ``manifest.json``. With released
    profiles (RLMRec), their published embeddings are used and only the intents are embedded."""
    cache = ResponseCache(stage_dir / "cache.jsonl")
    client = LLMClient(settings, cache, progress=progress)
    rows = {key: read_rows(stage_dir / name) for key, name in EMBEDDING_KEYS.items()}
    for key, entity_rows in rows.items():
        expected = data.n_items if key.startswith("item") else data.n_users
        if [r["id"] for r in entity_rows] != list(range(expected)):
            raise ValueError(f"{EMBEDDING_KEYS[key]} does not hold one row per entity in id order")
    released = (
        load_released(data, card, raw_text_dir) if card is not None and card.text.source == "rlmrec_profiles" else None
    )
    to_embed = [key for key in EMBEDDING_KEYS if released is None or key.endswith("intent")]
    vectors = asyncio.run(
        client.embed([r["text"] for key in to_embed for r in rows[key]], desc=f"{data.name} embeddings")
    )
    arrays, start = {}, 0
    for key in to_embed:
        arrays[key] = vectors[start : start + len(rows[key])]
        start += len(rows[key])
    if released is not None:
        arrays["user_profile"], arrays["item_profile"] = released.user_embeddings, released.item_embeddings
    with atomic_write(stage_dir / "embeddings.npz", binary=True) as handle:
        np.savez(handle, **arrays)

    reports = {step: json.loads((stage_dir / f"{step}.report.json").read_text()) for step in STEPS}
    files = [*EMBEDDING_KEYS.values(), "embeddings.npz"]
    manifest = {
        "dataset": data.name,
        "dataset_sha256": data.checksum,
        "model": settings.model,
        "embedding_model": settings.embedding_model,
        "embedding_dim": int(vectors.shape[1]),
        "profile_embedding_dim": int(arrays["user_profile"].shape[1]),
        "profiles": (
            "released by RLMRec (GPT-3.5, embedded with text-embedding-ada-002); " + LEAKAGE_NOTE
            if released is not None
            else f"generated by {settings.model}"
        ),
        "prompt_versions": {**reports["profiles"]["prompt_versions"], **reports["intents"]["prompt_versions"]},
        "entities": {"users": data.n_users, "items": data.n_items},
        "fallbacks": {key: [r["id"] for r in rows[key] if r["status"] == "fallback"] for key in EMBEDDING_KEYS},
        "usage": {**{step: reports[step]["usage"] for step in STEPS}, "embeddings": client.usage.as_dict()},
        "settings": settings.model_dump(),  # names the key's environment variable, never the key
        "checksums": {name: sha256_file(stage_dir / name) for name in files},
    }
    write_text(stage_dir / "manifest.json", json.dumps(manifest, indent=1) + "\n")
    return manifest


def export_responses(
    data: InteractionData,
    card: DatasetCard,
    stage_dir: Path,
    settings: LLMSettings,
    out: Path,
    raw_text_dir: Path | None = None,
) -> int:
    """Write the cached responses behind the stage's profile and intent outputs (in request order) as a gzip
    JSONL file that can be shipped and declared in the dataset card; returns the number of records."""
    contexts = build_contexts(data, card, raw_text_dir)
    cache = ResponseCache(stage_dir / "cache.jsonl")
    client = LLMClient(settings, cache, progress=False)
    keys: list[str] = []
    for step in STEPS:
        if step == "profiles" and contexts.released is not None:
            continue  # published, not generated
        for request in build_requests(step, contexts, stage_dir):
            chain = client.cached_keys(request)
            if not chain:
                raise RuntimeError(
                    f"no cached response for {request.template.name} {request.entity}; run the stage first"
                )
            keys += chain
    out.parent.mkdir(parents=True, exist_ok=True)
    cache.export(out, keys)
    return len(keys)
