"""policies/example.yaml documents every field of the schema (so it cannot fall behind)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from weightguard.policy.schema import Policy

EXAMPLE = Path(__file__).resolve().parents[2] / "policies" / "example.yaml"


def _missing(schema: dict[str, Any], defs: dict[str, Any], doc: Any, path: str) -> list[str]:
    if "$ref" in schema:
        schema = defs[schema["$ref"].split("/")[-1]]
    props = schema.get("properties")
    if not props or not isinstance(doc, dict):
        return []
    missing = []
    for key, sub in props.items():
        if key not in doc:
            missing.append(f"{path}.{key}")
            continue
        if sub.get("type") not in ("array",) and "additionalProperties" not in sub:
            missing += _missing(sub, defs, doc[key], f"{path}.{key}")
    return missing


def test_example_policy_shows_every_field() -> None:
    schema = Policy.model_json_schema(by_alias=True)
    doc = yaml.safe_load(EXAMPLE.read_text())
    spec_schema = schema["$defs"]["PolicySpec"]
    assert _missing(spec_schema, schema["$defs"], doc["spec"], "spec") == []
