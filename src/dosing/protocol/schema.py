"""A JSON Schema for protocol files, generated from the classes the loader reads them into,
so editors can validate and complete a file as it is written (and it cannot drift)."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal, Union

import attrs

from dosing.protocol.entries import ProtocolEntry

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def protocol_schema() -> dict[str, Any]:
    """The schema of a protocol file."""
    definitions: dict[str, Any] = {}
    root = _object(ProtocolEntry, definitions)
    return {
        "$schema": DRAFT,
        "title": "dosing protocol file",
        "description": "A dosing regimen as a state machine; see protocols/*.yaml. Quote "
        "yes/no answers ('no'): dosing reads them as text, YAML 1.1 tools as booleans.",
        **root,
        "$defs": definitions,
    }


def _object(cls: type, definitions: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties = {}
    required = []
    for field in attrs.fields(cls):
        key = field.metadata.get("key", field.name)  # 'while', 'except': keywords in Python
        properties[key] = _type(hints[field.name], definitions)
        if field.default is attrs.NOTHING:
            required.append(key)
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = required
    return schema


def _type(hint: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [
            _type(arg, definitions) for arg in typing.get_args(hint) if arg is not type(None)
        ]
        nullable = type(None) in typing.get_args(hint)
        choices = [*options, {"type": "null"}] if nullable else options
        return choices[0] if len(choices) == 1 else {"anyOf": choices}
    if origin is Literal:
        return {"enum": list(typing.get_args(hint))}
    if origin is list:
        return {"type": "array", "items": _type(typing.get_args(hint)[0], definitions)}
    if origin is dict:
        return {
            "type": "object",
            "additionalProperties": _type(typing.get_args(hint)[1], definitions),
        }
    if attrs.has(hint):
        name = hint.__name__.removesuffix("Entry") or hint.__name__
        if name not in definitions:
            definitions[name] = {}
            definitions[name] = _object(hint, definitions)
        return {"$ref": f"#/$defs/{name}"}
    if hint is str:
        return {
            "type": ["string", "number"]
        }  # YAML reads 2026.11 or 0 as numbers; both are text here
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    raise TypeError(f"no JSON Schema for {hint!r}")
