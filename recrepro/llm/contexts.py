"""What the LLM is told about each user and item, built from item metadata and **training** interactions only.

Nothing here reads the validation or test parts of a split: user contexts come from the training-part ratings
the converter kept as side information (``train_ratings.npz``), item contexts from item metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recrepro.data.canonical import InteractionData
from recrepro.data.cards import DatasetCard
from recrepro.llm.released import ReleasedText, load_released

# How many liked / disliked items the user prompts (user_profile.yaml, user_intent.yaml and their RLMRec
# variants) list per user, best / worst rated first: the budget that keeps a user's prompt within a small local
# model's context. Changing either changes every user prompt: bump those templates' versions with it.
LIKED_PER_PROMPT = 10
DISLIKED_PER_PROMPT = 5


class TextUnavailable(RuntimeError):
    """The dataset has no text source for the LLM stage."""


@dataclass(frozen=True)
class TextContexts:
    """Per-entity template contexts, in canonical id order, and the prompt family they go with."""

    items: list[dict]
    users: list[dict]
    prompt_prefix: str = ""  # templates are "<prefix><kind>_<profile|intent>"
    released: ReleasedText | None = None  # published profiles, used as they are

    def fallback(self, kind: str, index: int) -> str:
        """A deterministic description used (and reported) when an entity's answer failed and failures are
        tolerated: the entity's own facts, never an empty or zero vector."""
        ctx = (self.items if kind == "item" else self.users)[index]
        if self.released is not None:
            return ctx["profile"]
        if kind == "item":
            return describe(ctx["item"])
        liked, disliked = "; ".join(ctx["liked"]) or "nothing", "; ".join(ctx["disliked"]) or "nothing"
        return f"Rated highly: {liked}. Rated poorly: {disliked}."


def describe(item: dict) -> str:
    """Compact one-line description of a movie: ``Title (year; genre, genre)``."""
    return f"{item['title']} ({item['year']}; {', '.join(item['genres'])})"


def _movielens(data: InteractionData, card: DatasetCard) -> TextContexts:
    items = []
    with open(data.side_file("items.jsonl")) as fh:
        for line in fh:
            row = json.loads(line)
            items.append({"title": row["title"], "year": row["year"], "genres": row["genres"]})
    if len(items) != data.n_items:
        raise TextUnavailable(f"{data.name}: items.jsonl has {len(items)} rows for {data.n_items} items")
    with np.load(data.side_file("train_ratings.npz")) as npz:
        users, item_ids, ratings = npz["user"], npz["item"], npz["rating"]
    like_at = card.conversion_params["min_rating"]  # a positive interaction: a like
    dislike_at_most = card.conversion_params["max_disliked_rating"]
    by_user: list[list[tuple[float, int]]] = [[] for _ in range(data.n_users)]
    for user, item, rating in zip(users.tolist(), item_ids.tolist(), ratings.tolist()):
        by_user[user].append((rating, item))
    liked, disliked = [], []
    for rated in by_user:
        best_first = sorted((r for r in rated if r[0] >= like_at), key=lambda r: (-r[0], r[1]))[:LIKED_PER_PROMPT]
        worst_first = sorted((r for r in rated if r[0] <= dislike_at_most), key=lambda r: (r[0], r[1]))
        worst_first = worst_first[:DISLIKED_PER_PROMPT]
        liked.append([describe(items[i]) for _, i in best_first])
        disliked.append([describe(items[i]) for _, i in worst_first])
    return TextContexts(
        items=[{"item": item} for item in items],
        users=[{"liked": liked[u], "disliked": disliked[u]} for u in range(data.n_users)],
    )


def _released(data: InteractionData, card: DatasetCard, raw_text_dir: Path | None) -> TextContexts:
    if raw_text_dir is None:
        raise TextUnavailable(f"{card.name}: the released profiles' folder was not given (--raw-text)")
    released = load_released(data, card, raw_text_dir)
    return TextContexts(
        items=[{"profile": p["profile"]} for p in released.item_profiles],
        users=[{"profile": p["profile"]} for p in released.user_profiles],
        prompt_prefix="rlmrec_",
        released=released,
    )


BUILDERS = {"movielens_recbole": _movielens}


def build_contexts(data: InteractionData, card: DatasetCard, raw_text_dir: Path | None = None) -> TextContexts:
    """Template contexts for every user and item of ``data``."""
    if not card.text.available:
        raise TextUnavailable(f"dataset {card.name!r} has no text source for the LLM stage: {card.text.reason}")
    if card.text.source == "rlmrec_profiles":
        return _released(data, card, raw_text_dir)
    if card.format not in BUILDERS:
        raise TextUnavailable(f"dataset {card.name!r}: no text builder for format {card.format!r}")
    return BUILDERS[card.format](data, card)
