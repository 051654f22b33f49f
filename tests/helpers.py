"""Test helpers: tiny datasets in the published formats, and a loopback HTTP file server with Range support."""

from __future__ import annotations

import hashlib
import json
import pickle
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import yaml

from recrepro.data.canonical import FORMAT_VERSION, InteractionData, normalize_pairs, write_interactions
from recrepro.data.cards import DatasetCard
from recrepro.data.fetch import sha256_file
from recrepro.inputs import KnowledgeGraph, TextEmbeddings


def random_interactions(
    n_users: int = 30, n_items: int = 40, n: int = 400, seed: int = 0, name: str = "toy"
) -> InteractionData:
    """A random split (3:1:1) in which every user and item has a training interaction."""
    rng = np.random.default_rng(seed)
    keys = rng.choice(n_users * n_items, size=n, replace=False)
    pairs = np.stack([keys // n_items, keys % n_items], 1)
    cover = np.stack([np.arange(max(n_users, n_items)) % n_users, np.arange(max(n_users, n_items)) % n_items], 1)
    cover_keys = set((cover[:, 0] * n_items + cover[:, 1]).tolist())
    rest = np.array([p for p in pairs if int(p[0] * n_items + p[1]) not in cover_keys])
    n_train = int(len(rest) * 0.6)
    n_val = int(len(rest) * 0.2)
    train = normalize_pairs(np.concatenate([cover, rest[:n_train]]))
    return InteractionData(
        name,
        n_users,
        n_items,
        train=train,
        val=normalize_pairs(rest[n_train : n_train + n_val]),
        test=normalize_pairs(rest[n_train + n_val :]),
    )


def clustered_interactions(
    n_users: int = 80, n_items: int = 120, clusters: int = 4, per_user: int = 15, seed: int = 0, name: str = "toy"
) -> InteractionData:
    """Users and items in clusters; a user interacts with items of its own cluster (plus a little noise), so a
    collaborative model has something to learn. Split 3:1:1 at random; every user and item has training data."""
    rng = np.random.default_rng(seed)
    user_cluster = np.arange(n_users) % clusters
    item_cluster = np.arange(n_items) % clusters
    pairs = []
    for user in range(n_users):
        own = np.flatnonzero(item_cluster == user_cluster[user])
        chosen = rng.choice(own, size=min(per_user, len(own)), replace=False)
        noise = rng.choice(n_items, size=2, replace=False)
        pairs += [(user, int(i)) for i in np.concatenate([chosen, noise])]
    pairs = normalize_pairs(np.array(pairs))
    parts = rng.permutation(len(pairs)) % 5  # 0,1,2 -> train; 3 -> val; 4 -> test
    train, val, test = pairs[parts < 3], pairs[parts == 3], pairs[parts == 4]
    cover = np.stack([np.arange(n_items) % n_users, np.arange(n_items)], 1)  # every item gets a training pair
    keys = lambda a: set((a[:, 0] * n_items + a[:, 1]).tolist())  # noqa: E731
    covered = keys(cover)
    val = np.array([p for p in val if int(p[0] * n_items + p[1]) not in covered]).reshape(-1, 2)
    test = np.array([p for p in test if int(p[0] * n_items + p[1]) not in covered]).reshape(-1, 2)
    return InteractionData(
        name,
        n_users,
        n_items,
        train=normalize_pairs(np.concatenate([train, cover])),
        val=normalize_pairs(val),
        test=normalize_pairs(test),
    )


def write_irllrec_dataset(data: InteractionData, folder: Path) -> dict[str, str]:
    """Write ``data`` as the published pickles under ``folder``; returns {file name: sha256}."""
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for part, name in (("train", "trn_mat.pkl"), ("val", "val_mat.pkl"), ("test", "tst_mat.pkl")):
        pairs = data.part(part)
        matrix = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(data.n_users, data.n_items))
        payload = pickle.dumps(matrix)
        (folder / name).write_bytes(payload)
        sums[name] = hashlib.sha256(payload).hexdigest()
    return sums


def write_card(cards_dir: Path, data: InteractionData, sums: dict[str, str], base_url: str, **extra) -> Path:
    cards_dir.mkdir(parents=True, exist_ok=True)
    card = {
        "name": data.name,
        "title": "toy",
        "description": "toy data",
        "homepage": "http://example.invalid",
        "license": "CC0",
        "citation": "none",
        "format": "irllrec_pickles",
        "files": [{"path": name, "url": f"{base_url}/{name}", "sha256": digest} for name, digest in sums.items()],
        "conversion": "published split",
        "stats": {
            "users": data.n_users,
            "items": data.n_items,
            "train": len(data.train),
            "val": len(data.val),
            "test": len(data.test),
        },
        **extra,
    }
    path = cards_dir / f"{data.name}.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


@contextmanager
def serving(httpd, handle):
    """Run ``httpd`` in a background thread for the duration of a ``with`` block that yields ``handle``."""
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield handle
    finally:
        httpd.shutdown()
        httpd.server_close()


class FileServer:
    """Serves ``files`` (path -> bytes) on 127.0.0.1, honouring Range requests.

    ``truncate_first`` makes the first full response of each path stop half-way (a dropped connection);
    ``corrupt`` serves altered bytes for the listed paths; ``requests`` logs (path, Range header).
    """

    def __init__(self, files: dict[str, bytes], truncate_first: bool = False, corrupt: set[str] = frozenset()):
        self.files = files
        self.truncate_first = truncate_first
        self.corrupt = set(corrupt)
        self.requests: list[tuple[str, str | None]] = []
        self._truncated: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path.lstrip("/")
                server.requests.append((path, self.headers.get("Range")))
                if path not in server.files:
                    self.send_error(404)
                    return
                body = server.files[path]
                if path in server.corrupt:
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                start = 0
                if (rng := self.headers.get("Range")) and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if server.truncate_first and start == 0 and path not in server._truncated:
                    server._truncated.add(path)
                    self.wfile.write(chunk[: len(chunk) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def running(self):
        return serving(self.httpd, self)


def tiny_movielens(folder: Path, n_users: int = 6, n_items: int = 8) -> tuple[InteractionData, DatasetCard]:
    """A canonical MovieLens-format dataset with side files (items, training ratings), in ``folder``. Each user
    rates 4 movies in training (high and low ratings) and has one other movie in validation and one in test."""
    import json as _json

    from recrepro.data.canonical import load_canonical
    from recrepro.data.fetch import sha256_file

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    ratings, val, test = [], [], []
    for user in range(n_users):
        items = rng.permutation(n_items)
        for item in items[:4]:
            ratings.append((user, int(item), float(rng.choice([1, 2, 4, 5]))))
        val.append((user, int(items[4])))
        test.append((user, int(items[5])))
    train = [(u, i) for u, i, r in ratings if r >= 4]
    data = InteractionData(
        "tiny",
        n_users,
        n_items,
        train=normalize_pairs(np.array(train)),
        val=normalize_pairs(np.array(val)),
        test=normalize_pairs(np.array(test)),
    )
    write_interactions(folder / "interactions.npz", data)
    with open(folder / "items.jsonl", "w") as fh:
        for item in range(n_items):
            fh.write(
                _json.dumps(
                    {
                        "item": item,
                        "raw_id": str(item + 1),
                        "title": f"Movie {item}",
                        "year": "1999",
                        "genres": ["Drama"],
                    }
                )
                + "\n"
            )
    arr = np.array(ratings)
    np.savez(folder / "train_ratings.npz", user=arr[:, 0].astype(int), item=arr[:, 1].astype(int), rating=arr[:, 2])
    side = ["items.jsonl", "train_ratings.npz"]
    stats = data.stats()
    (folder / "meta.json").write_text(
        _json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "name": "tiny",
                "stats": stats,
                "interactions_sha256": sha256_file(folder / "interactions.npz"),
                "side_files": {name: sha256_file(folder / name) for name in side},
            }
        )
    )
    card = DatasetCard.model_validate(
        {
            "name": "tiny",
            "title": "tiny",
            "description": "d",
            "homepage": "h",
            "license": "l",
            "citation": "c",
            "format": "movielens_recbole",
            "files": [{"path": "x.whl", "pypi": "x==1", "sha256": "0" * 64}],
            "conversion": "c",
            "conversion_params": {"min_rating": 4, "max_disliked_rating": 2},
            "stats": stats,
            "text": {"available": True, "reason": "test"},
        }
    )
    return load_canonical(folder, card), card


def write_canonical(data: InteractionData, folder: Path) -> None:
    """``data`` as a prepared dataset folder (interactions and meta.json)."""
    folder.mkdir(parents=True)
    write_interactions(folder / "interactions.npz", data)
    (folder / "meta.json").write_text(
        json.dumps(
            {
                "format_version": FORMAT_VERSION,
                "name": data.name,
                "stats": data.stats(),
                "side_files": {},
                "interactions_sha256": sha256_file(folder / "interactions.npz"),
            }
        )
    )


PROFILE_DIM, INTENT_DIM = 24, 40


def synthetic_extras(name, data, text_dir=None):
    """Random text embeddings and a random knowledge graph for ``data``: the side inputs of every method."""
    rng = np.random.default_rng(0)
    if name == "text":
        manifest = {
            "model": "synthetic",
            "embedding_model": "synthetic",
            "embedding_dim": PROFILE_DIM,
            "checksums": {"embeddings.npz": "0" * 64},
        }
        return TextEmbeddings(
            user_profile=rng.normal(size=(data.n_users, PROFILE_DIM)).astype(np.float32),
            item_profile=rng.normal(size=(data.n_items, PROFILE_DIM)).astype(np.float32),
            user_intent=rng.normal(size=(data.n_users, INTENT_DIM)).astype(np.float32),
            item_intent=rng.normal(size=(data.n_items, INTENT_DIM)).astype(np.float32),
            manifest=manifest,
        )
    if name == "kg":
        heads = rng.integers(0, data.n_items, 200)
        tails = rng.integers(data.n_items, data.n_items + 20, 200)
        triples = np.stack([heads, rng.integers(0, 3, 200), tails], 1)
        return KnowledgeGraph(
            triples=triples, relations=np.array(["a", "b", "c"]), n_entities=data.n_items + 20, source="synthetic"
        )
    raise KeyError(name)
