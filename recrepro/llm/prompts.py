"""Versioned prompt templates (``recrepro/prompts/*.yaml``) and the JSON schemas of their answers.

A template has a system message, a user message (Jinja2, strict about missing values), the name of its
output schema (a pydantic model below), the field whose text is embedded, and per-field token budgets that
local models use for schema-guided decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"

_Text = Field(min_length=2, max_length=2000)


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Profile(_Answer):
    """RLMRec profile: who enjoys the item / what the user enjoys, and why."""

    summarization: str = _Text
    reasoning: str = _Text


class ItemIntent(_Answer):
    """IRLLRec item intent: key attributes, what attracts and repels, and the intent text."""

    key_attributes: str = _Text
    attracts: str = _Text
    repels: str = _Text
    intent: str = _Text


class UserIntent(_Answer):
    """IRLLRec user intent: key attributes, likes and dislikes, and the intent text."""

    key_attributes: str = _Text
    likes: str = _Text
    dislikes: str = _Text
    intent: str = _Text


SCHEMAS: dict[str, type[_Answer]] = {cls.__name__: cls for cls in (Profile, ItemIntent, UserIntent)}
_JINJA = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    version: int
    schema: type[_Answer]
    embed_field: str
    field_tokens: dict[str, int]
    system: str
    user: str

    @property
    def max_tokens(self) -> int:
        """Completion budget: the field budgets plus room for the JSON structure."""
        return sum(self.field_tokens.values()) + 16 * len(self.field_tokens) + 16

    def render(self, context: dict[str, Any]) -> list[dict[str, str]]:
        """Chat messages for one entity."""
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": _JINJA.from_string(self.user).render(**context)},
        ]

    def response_format(self, field_hints: bool = False) -> dict[str, Any]:
        """OpenAI-style structured-output request: an object of required string fields and nothing else (the
        subset strict structured output accepts everywhere); length limits are checked after parsing.
        ``field_hints`` adds the per-field token budgets (``x-field-tokens``) for the local provider."""
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {n: {"type": "string"} for n in self.schema.model_fields},
            "required": list(self.schema.model_fields),
            "additionalProperties": False,
        }
        if field_hints:
            schema["x-field-tokens"] = dict(self.field_tokens)
        return {"type": "json_schema", "json_schema": {"name": self.schema.__name__, "schema": schema, "strict": True}}


@cache
def load_prompt(name: str, directory: Path = PROMPTS_DIR) -> PromptTemplate:
    """Load and check one template."""
    path = directory / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template {path}")
    raw = yaml.safe_load(path.read_text())
    schema = SCHEMAS.get(raw["schema"])
    if schema is None:
        raise ValueError(f"{path}: unknown schema {raw['schema']!r}; known: {sorted(SCHEMAS)}")
    if set(raw["field_tokens"]) != set(schema.model_fields) or raw["embed_field"] not in schema.model_fields:
        raise ValueError(f"{path}: field_tokens and embed_field must name the fields of {schema.__name__}")
    return PromptTemplate(
        name=raw["name"],
        version=int(raw["version"]),
        schema=schema,
        embed_field=raw["embed_field"],
        field_tokens=dict(raw["field_tokens"]),
        system=raw["system"],
        user=raw["user"],
    )
