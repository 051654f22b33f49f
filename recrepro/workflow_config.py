"""The workflow's configuration: command-line values coerced to the schema's types, defaults filled in, and every
violation reported with the key it concerns.

Snakemake parses ``--config key=value`` without YAML types (``tune=false`` arrives as the string ``"false"``,
``llm='{api_base: null}'`` as the string ``"null"``), so strings are converted where the schema asks for another
type. Validation uses jsonschema directly, so that a message names the offending key (``tuning.trial is not a
setting; did you mean tuning.trials?``) instead of printing the whole configuration.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class WorkflowConfigError(ValueError):
    """The workflow configuration is invalid; the message lists every problem by key."""


def load_schema(path: Path | str) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"only local $ref are supported, got {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type", [])
    return [kind] if isinstance(kind, str) else list(kind)


def _parse(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


_CHECKS = {
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "string": lambda v: isinstance(v, str),
}


def coerce(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """``value`` with command-line strings converted to the type ``schema`` asks for (recursively)."""
    schema = _resolve(schema, root)
    types = _types(schema)
    if isinstance(value, str) and types and "string" not in types:
        parsed = _parse(value)
        if any(_CHECKS[t](parsed) for t in types):
            value = parsed
    elif isinstance(value, str) and "null" in types and value.strip() in ("null", "~"):
        value = None
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            key: coerce(item, properties.get(key, extra if isinstance(extra, dict) else {}), root)
            for key, item in value.items()
        }
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce(item, schema["items"], root) for item in value]
    return value


def fill_defaults(value: Any, schema: dict[str, Any], root: dict[str, Any]) -> Any:
    """``value`` with the schema's defaults added for missing keys (recursively)."""
    schema = _resolve(schema, root)
    if not isinstance(value, dict):
        return value
    out = dict(value)
    properties = schema.get("properties", {})
    for key, sub in properties.items():
        sub = _resolve(sub, root)
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = fill_defaults(out[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in out.keys() - properties.keys():
            out[key] = fill_defaults(out[key], extra, root)
    return out


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unexpected = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        prefix = f"{key}." if error.absolute_path else ""
        lines = []
        for name in unexpected:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known settings: {', '.join(allowed)}"
            lines.append(f"{prefix}{name} is not a setting{hint}")
        return "\n".join(lines)
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        example = {"array": " (a list, e.g. seeds='[1,2,3]')", "object": " (a mapping, e.g. llm='{model: ...}')"}
        return f"{key} must be of type {expected}{example.get(expected, '')}, got {error.instance!r}"
    if error.validator == "pattern":
        return f"{key} = {error.instance!r} is not allowed: it must match {error.validator_value}"
    if error.validator == "required":
        missing = [name for name in error.validator_value if name not in (error.instance or {})]
        prefix = f"{key}." if error.absolute_path else ""
        return "\n".join(f"{prefix}{name} is required" for name in missing)
    return f"{key}: {error.message}"


def storage_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as the Optuna storage of parallel tuning workers, or None. "" (a journal file per
    study) and database URLs without a password are fine: the URL is written to logs and job scripts, so the
    password comes from the environment (``PGPASSWORD``) or ``~/.pgpass``, which libpq reads."""
    if not url:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return f"{url!r} is not a database URL (e.g. postgresql://user@host:5432/optuna)"
    if parsed.get_backend_name() == "sqlite":
        return (
            "SQLite storage is unsafe with parallel workers (Optuna FAQ); leave tuning.storage empty for a journal "
            "file, or give a PostgreSQL URL"
        )
    if parsed.password is not None:
        return (
            "the URL contains a password, which would be written to logs and job scripts; remove it and give it to "
            "the workers in PGPASSWORD or ~/.pgpass instead"
        )
    return None


def check_config(config: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The coerced configuration with defaults filled in; :class:`WorkflowConfigError` lists every violation."""
    coerced = fill_defaults(coerce(config, schema, schema), schema, schema)
    validator = jsonschema.Draft202012Validator(schema)
    problems = [_describe(e) for e in sorted(validator.iter_errors(coerced), key=lambda e: list(e.absolute_path))]
    storage = coerced.get("tuning", {}).get("storage") if isinstance(coerced.get("tuning"), dict) else None
    if isinstance(storage, str) and (problem := storage_url_problem(storage)):
        problems.append(f"tuning.storage: {problem}")
    if problems:
        raise WorkflowConfigError("invalid workflow configuration:\n  " + "\n  ".join(problems))
    return coerced
