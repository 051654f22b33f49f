"""Side inputs a method can declare in ``Method.requires``: the knowledge graph (from the canonical dataset
folder) and the LLM stage's text embeddings (from the stage folder)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recrepro.data.canonical import DatasetError, InteractionData
from recrepro.data.cards import DatasetCard

LOADERS: dict[str, Callable[..., Any]] = {}


def reads_llm_stage(requires: tuple[str, ...], card: DatasetCard) -> bool:
    """Whether a method with side inputs ``requires`` reads the LLM stage's outputs on this dataset: its text, or
    the item-attribute knowledge graph built from them when the dataset has no curated one."""
    return "text" in requires or ("kg" in requires and card.knowledge_graph is None)


def unavailable(requires: tuple[str, ...], card: DatasetCard) -> str | None:
    """Why a method with side inputs ``requires`` cannot run on this dataset (None if it can)."""
    if "text" in requires and not card.text.available:
        return f"it needs LLM text and {card.name} has no text source ({card.text.reason.strip()})"
    if "kg" in requires and card.knowledge_graph is None and not card.text.available:
        return f"it needs a knowledge graph and {card.name} has neither one nor a text source to build one from"
    return None


def side_input(name: str) -> Callable:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        LOADERS[name] = fn
        return fn

    return wrap


@dataclass(frozen=True)
class KnowledgeGraph:
    """Triples over entities ``0..n_entities-1`` (items are entities ``0..n_items-1``) and named relations."""

    triples: np.ndarray  # [n, 3] int64: head, relation, tail
    relations: np.ndarray  # relation names
    n_entities: int
    source: str
    deviation: str | None = None

    def describe(self) -> str:
        return (
            f"knowledge graph: {self.source}; {len(self.triples):,} triples, {len(self.relations)} relations, "
            f"{self.n_entities:,} entities"
        )

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this input in a run record (compared with a reference run's inputs)."""
        triples = np.ascontiguousarray(self.triples, dtype=np.int64)
        return {
            "kind": "llm-attributes" if self.deviation else "dataset",
            "sha256": hashlib.sha256(triples.tobytes()).hexdigest(),
            "n_entities": self.n_entities,
        }


ATTRIBUTE_SPLIT = re.compile(r"[,;/|]|\band\b")


def attribute_kg(data: InteractionData, text_dir: Path, min_items: int = 2) -> KnowledgeGraph:
    """An item-attribute graph from the LLM stage's item intents: each key attribute named for at least
    ``min_items`` items becomes an entity linked to those items by one relation, ``has_key_attribute``."""
    rows = [json.loads(line) for line in open(Path(text_dir) / "item_intents.jsonl")]
    per_item = []
    for row in rows:
        text = row["answer"]["key_attributes"] if row["status"] == "ok" else ""
        names = {re.sub(r"[^a-z0-9' -]", "", part.lower()).strip() for part in ATTRIBUTE_SPLIT.split(text)}
        per_item.append({name for name in names if 2 <= len(name) <= 40})
    counts: dict[str, int] = {}
    for names in per_item:
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    kept = sorted(name for name, count in counts.items() if count >= min_items)
    entity = {name: data.n_items + k for k, name in enumerate(kept)}
    triples = np.array(
        [(item, 0, entity[name]) for item, names in enumerate(per_item) for name in sorted(names) if name in entity],
        dtype=np.int64,
    ).reshape(-1, 3)
    return KnowledgeGraph(
        triples=triples,
        relations=np.array(["has_key_attribute"]),
        n_entities=data.n_items + len(kept),
        source="item-attribute graph from LLM item intents",
        deviation="knowledge graph built from LLM-extracted item attributes (the dataset has no "
        "curated knowledge graph)",
    )


@side_input("kg")
def load_kg(data: InteractionData, text_dir: Path | None = None) -> KnowledgeGraph:
    """The dataset's knowledge graph; without one, an item-attribute graph from the LLM stage's item intents."""
    if "kg.npz" in data.meta.get("side_files", {}):
        with np.load(data.side_file("kg.npz")) as npz:
            return KnowledgeGraph(
                triples=npz["triples"],
                relations=npz["relations"],
                n_entities=int(npz["n_entities"]),
                source="the dataset's knowledge graph",
            )
    if text_dir is not None and (Path(text_dir) / "item_intents.jsonl").is_file():
        return attribute_kg(data, Path(text_dir))
    raise DatasetError(
        f"{data.name} has no knowledge graph, and no LLM-stage item intents to build an item-attribute "
        "graph from (run the LLM stage and pass --text <folder>)"
    )


@dataclass(frozen=True)
class TextEmbeddings:
    """Frozen text embeddings from the LLM stage, one row per user / item in id order."""

    user_profile: np.ndarray
    item_profile: np.ndarray
    user_intent: np.ndarray
    item_intent: np.ndarray
    manifest: dict

    @property
    def stand_in(self) -> bool:
        """Whether these are the deterministic stand-in embeddings of an implementation check (no real text)."""
        return bool(self.manifest.get("stand_in"))

    @property
    def sha256(self) -> str:
        return self.manifest["checksums"]["embeddings.npz"]

    def _source(self) -> str:
        m = self.manifest
        if self.stand_in:
            return m["source"]
        return (
            f"profiles {m.get('profiles', 'generated by ' + m['model'])}; intents by {m['model']}, embedded with "
            f"{m['embedding_model']} ({m['embedding_dim']}-d)"
        )

    def describe(self) -> str:
        return f"text: {self._source()}; embeddings sha256 {self.sha256[:12]}"

    def fingerprint(self) -> dict[str, Any]:
        """What identifies this input in a run record (compared with a reference run's inputs)."""
        if self.stand_in:
            kind = "stand-in"
        elif str(self.manifest.get("profiles", "")).startswith("released by RLMRec"):
            kind = "rlmrec-profiles"
        else:
            kind = "llm"
        return {"kind": kind, "sha256": self.sha256, "model": self.manifest.get("model")}

    @property
    def deviation(self) -> str:
        if self.stand_in:
            return (
                f"stand-in text ({self._source()}) instead of LLM text: an implementation check on inputs shared "
                "with the reference code; the metrics mean nothing as research results"
            )
        return (
            f"text from this harness's LLM stage ({self._source()}) instead of the reference's GPT-3.5 profiles "
            "embedded with text-embedding-ada-002 (1536-d) and intents embedded with text-embedding-3-large "
            "(3072-d)"
        )


@side_input("text")
def load_text(data: InteractionData, text_dir: Path | None = None) -> TextEmbeddings:
    if text_dir is None or not (Path(text_dir) / "manifest.json").is_file():
        raise DatasetError(
            f"no LLM-stage outputs for {data.name} (looked in {text_dir}); run the LLM stage "
            f"(`recrepro llm profiles|intents|embeddings {data.name}`) and pass --text <folder>"
        )
    manifest = json.loads((Path(text_dir) / "manifest.json").read_text())
    if manifest["dataset_sha256"] != data.checksum:
        raise DatasetError(
            f"{text_dir} was generated for another version of {data.name} (dataset checksum "
            f"{manifest['dataset_sha256'][:12]}, data {data.checksum[:12]})"
        )
    with np.load(Path(text_dir) / "embeddings.npz") as npz:
        arrays = {
            key: npz[key].astype(np.float32) for key in ("user_profile", "item_profile", "user_intent", "item_intent")
        }
    for key, array in arrays.items():
        expected = data.n_users if key.startswith("user") else data.n_items
        if array.shape[0] != expected:
            raise DatasetError(f"{key} embeddings have {array.shape[0]} rows, {data.name} has {expected}")
    return TextEmbeddings(**arrays, manifest=manifest)


def load_extra(name: str, data: InteractionData, text_dir: Path | None = None) -> Any:
    """Load side input ``name`` of ``data``; a clear error names what is missing and how to get it."""
    if name not in LOADERS:
        raise DatasetError(f"unknown side input {name!r}; known: {sorted(LOADERS)}")
    return LOADERS[name](data, text_dir=text_dir)
