"""The official implementations' input formats, written from the harness's own inputs, so that the official code
can be run on exactly what the harness trains on (fidelity checks); and the deterministic stand-in text that
lets two implementations of a text method be compared without real LLM text.

- IRLLRec / RLMRec (``encoder/``): ``trn_mat.pkl``, ``val_mat.pkl``, ``tst_mat.pkl`` (scipy COO user x item,
  float64 ones) and the four text-embedding pickles that its configurator loads for every model.
- KGIN: ``train.txt`` and ``test.txt`` (``user item item ...`` per line) and ``kg_final.txt`` (``head relation
  tail``). KGIN has no validation split and selects on ``test.txt``; ``target`` says which of our parts to put
  there.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recrepro.atomic import atomic_write
from recrepro.data.canonical import InteractionData
from recrepro.data.fetch import sha256_file

IRLLREC_SPLIT_FILES = {"train": "trn_mat.pkl", "val": "val_mat.pkl", "test": "tst_mat.pkl"}
IRLLREC_TEXT_FILES = {
    "user_profile": "usr_emb_np.pkl",
    "item_profile": "itm_emb_np.pkl",
    "user_intent": "user_intent_emb_3.pkl",
    "item_intent": "item_intent_emb_3.pkl",
}
TEXT_KEYS = tuple(IRLLREC_TEXT_FILES)

# The stand-in text: the reference's embedding sizes (ada-002 profiles, text-embedding-3-large intents), drawn
# from one generator in this order (reference-results, "Stand-in text for implementation checks").
STAND_IN_SEED = 0
STAND_IN_DIMS = {"profile": 1536, "intent": 3072}
STAND_IN_ORDER = ("user_profile", "user_intent", "item_profile", "item_intent")
STAND_IN_SOURCE = (
    "deterministic stand-in embeddings: numpy default_rng(0).standard_normal, float32, drawn in the order user "
    "profile (U x 1536), user intent (U x 3072), item profile (I x 1536), item intent (I x 3072)"
)


def _pickle(path: Path, value: object) -> None:
    with atomic_write(path, binary=True) as handle:
        pickle.dump(value, handle, protocol=4)


def export_irllrec(data: InteractionData, text: dict[str, np.ndarray], out: Path | str) -> dict[str, str]:
    """Write ``data`` and ``text`` (keys ``user_profile``, ...) in the IRLLRec reference's data layout.

    Returns the SHA-256 of every file written, by file name.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for part, name in IRLLREC_SPLIT_FILES.items():
        pairs = data.part(part)
        matrix = sp.coo_matrix(
            (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(data.n_users, data.n_items), dtype=np.float64
        )
        _pickle(out / name, matrix)
    for key, name in IRLLREC_TEXT_FILES.items():
        expected = data.n_users if key.startswith("user") else data.n_items
        if text[key].shape[0] != expected:
            raise ValueError(f"{key} has {text[key].shape[0]} rows, {data.name} has {expected}")
        _pickle(out / name, np.ascontiguousarray(text[key], dtype=np.float32))
    return {path.name: sha256_file(path) for path in sorted(out.glob("*.pkl"))}


def _user_lines(pairs: np.ndarray) -> str:
    users, starts = np.unique(pairs[:, 0], return_index=True)
    groups = np.split(pairs[:, 1], starts[1:])
    return "".join(f"{user} {' '.join(map(str, items))}\n" for user, items in zip(users, groups))


def export_kgin(data: InteractionData, triples: np.ndarray, out: Path | str, target: str = "test") -> dict[str, str]:
    """Write ``data`` and a knowledge graph (items are entities ``0..I-1``) in the KGIN reference's layout, with
    our ``target`` part ("val" or "test") as its ``test.txt``. Returns the SHA-256 of every file written."""
    if target not in ("val", "test"):
        raise ValueError(f"target must be 'val' or 'test', got {target!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "train.txt": _user_lines(data.train),
        "test.txt": _user_lines(data.part(target)),
        "kg_final.txt": "".join(f"{h} {r} {t}\n" for h, r, t in np.asarray(triples, dtype=np.int64)),
    }
    for name, text in files.items():
        with atomic_write(out / name) as handle:
            handle.write(text)
    return {name: sha256_file(out / name) for name in files}


def stand_in_text(n_users: int, n_items: int, seed: int = STAND_IN_SEED) -> dict[str, np.ndarray]:
    """The stand-in text embeddings of a dataset with ``n_users`` users and ``n_items`` items."""
    rng = np.random.default_rng(seed)
    out = {}
    for key in STAND_IN_ORDER:
        rows = n_users if key.startswith("user") else n_items
        out[key] = rng.standard_normal((rows, STAND_IN_DIMS[key.split("_")[1]]), dtype=np.float32)
    return out


def write_stand_in_stage(data: InteractionData, out: Path) -> dict:
    """Write stand-in text where the training step reads LLM-stage outputs (``embeddings.npz`` and a manifest
    marked ``stand_in``), so that ``--text <out>`` trains on it."""
    out.mkdir(parents=True, exist_ok=True)
    arrays = stand_in_text(data.n_users, data.n_items)
    with atomic_write(out / "embeddings.npz", binary=True) as handle:
        np.savez(handle, **arrays)
    manifest = {
        "dataset": data.name,
        "dataset_sha256": data.checksum,
        "stand_in": True,
        "source": STAND_IN_SOURCE,
        "model": "none (stand-in)",
        "embedding_model": "none (stand-in)",
        "embedding_dim": STAND_IN_DIMS["intent"],
        "profile_embedding_dim": STAND_IN_DIMS["profile"],
        "checksums": {"embeddings.npz": sha256_file(out / "embeddings.npz")},
    }
    with atomic_write(out / "manifest.json") as handle:
        handle.write(json.dumps(manifest, indent=1) + "\n")
    return manifest
