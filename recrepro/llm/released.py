"""RLMRec's released text (``data.zip``): LLM profiles and their ada-002 embeddings, used as published.

The archive holds, per dataset, ``usr_prf.pkl`` / ``itm_prf.pkl`` (index -> {"profile", "reasoning"}) and
``usr_emb_np.pkl`` / ``itm_emb_np.pkl`` (numpy arrays, one row per user / item). They are read with the
restricted unpickler. Caution recorded by a third-party audit: the profiles were generated from interactions
and reviews with no documented cut-off, so they may contain information from validation or test interactions;
tables label their use.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recrepro.data.canonical import DatasetError, InteractionData
from recrepro.data.cards import DatasetCard
from recrepro.data.safe_pickle import safe_load

LEAKAGE_NOTE = (
    "RLMRec's released profiles were generated with no documented training cut-off and may contain "
    "information from validation or test interactions"
)


@dataclass(frozen=True)
class ReleasedText:
    user_profiles: list[dict[str, str]]
    item_profiles: list[dict[str, str]]
    user_embeddings: np.ndarray
    item_embeddings: np.ndarray


def _profiles(obj, expected: int, what: str) -> list[dict[str, str]]:
    rows = [obj[i] for i in range(len(obj))] if isinstance(obj, (dict, list)) else None
    if rows is None or len(rows) != expected or not all(isinstance(r, dict) and "profile" in r for r in rows):
        raise DatasetError(f"{what}: expected {expected} profiles (index -> {{'profile', 'reasoning'}})")
    return [{"profile": str(r["profile"]), "reasoning": str(r.get("reasoning", ""))} for r in rows]


def load_released(data: InteractionData, card: DatasetCard, raw_text_dir: Path) -> ReleasedText:
    """The released profiles and embeddings of ``data``, checked against its size."""
    archive = Path(raw_text_dir) / card.text.files[0].path
    if not archive.is_file():
        raise DatasetError(f"{archive} is missing; fetch the text source first (recrepro fetch {card.name} --text)")
    members = card.text.members
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        missing = [m for m in members.values() if m not in names]
        if missing:
            raise DatasetError(f"{archive} has no {missing}; it holds {sorted(names)[:20]}")
        loaded = {key: safe_load(zf.read(member)) for key, member in members.items()}
    embeddings = {}
    for kind, expected in (("user", data.n_users), ("item", data.n_items)):
        array = np.asarray(loaded[f"{kind}_embeddings"], dtype=np.float32)
        if array.ndim != 2 or array.shape[0] != expected:
            raise DatasetError(
                f"released {kind} embeddings have shape {array.shape}, {data.name} has {expected} {kind}s"
            )
        embeddings[kind] = array
    return ReleasedText(
        user_profiles=_profiles(loaded["user_profiles"], data.n_users, "released user profiles"),
        item_profiles=_profiles(loaded["item_profiles"], data.n_items, "released item profiles"),
        user_embeddings=embeddings["user"],
        item_embeddings=embeddings["item"],
    )
