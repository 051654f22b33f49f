"""Content-addressed, append-only, crash-safe store of LLM responses and embeddings.

Only valid answers are stored here; invalid ones go to a :class:`FailureLog` beside it (the same format), so that
they are never reused as answers and are asked again on the next run.

Each line of the JSONL file is one record keyed by the SHA-256 of everything that determines the answer
(model, rendered messages, response schema, decoding parameters, prompt version) -- not LiteLLM's own cache
key, which leaves out provider-specific parameters. Records are appended and fsync'd one by one, so an
interrupted run loses at most the request in flight, and a torn last line (a crash mid-write) is ignored.
API keys and endpoints are never part of a record.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def request_key(payload: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a request description."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


class ResponseCache:
    """Records by key, loaded from (and appended to) one JSONL file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.records: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            with self.path.open("rb") as fh:
                self._load(fh)

    def _load(self, lines) -> int:
        added = 0
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: ignoring unreadable line %d (an interrupted write)", self.path, number)
                continue
            if record["key"] not in self.records:
                added += 1
            self.records[record["key"]] = record
        return added

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def get(self, key: str) -> dict[str, Any] | None:
        return self.records.get(key)

    def put(self, record: dict[str, Any]) -> None:
        """Append one record durably."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
        with open(self.path, "a+b") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    line = "\n" + line  # close a torn line left by a crash
            fh.write(line.encode())
            fh.flush()
            os.fsync(fh.fileno())
        self.records[record["key"]] = record

    def seed_from(self, shipped: Path) -> int:
        """Add the valid answers of a shipped (gzip) cache that are not here yet; returns how many were added."""
        with gzip.open(shipped, "rb") as fh:
            lines = fh.readlines()
        before = set(self.records)
        self._load(lines)
        for key in self.records.keys() - before:  # an invalid answer is never an answer to reuse
            if self.records[key].get("status", "ok") != "ok":
                del self.records[key]
        new = [self.records[k] for k in self.records.keys() - before]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as fh:
            for record in new:
                fh.write((json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
        return len(new)

    def export(self, path: Path, keys: list[str]) -> None:
        """Write the given records, in order, as a gzip JSONL file (a cache to ship)."""
        with gzip.GzipFile(path, "wb", mtime=0) as fh:
            for key in keys:
                fh.write((json.dumps(self.records[key], sort_keys=True, separators=(",", ":")) + "\n").encode())


class FailureLog(ResponseCache):
    """Invalid answers (raw text and validation errors field by field), by request key; never read as answers.

    The file is created on the first failure only.
    """
