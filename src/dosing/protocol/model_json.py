"""A compiled protocol as plain JSON, and back.

The compile cache stores protocols in this form rather than as pickles: reading it back can
only build the model's own classes (an allow-list, by name) from strings, numbers, exact
fractions, tuples, frozensets and dicts, so no file content can ever run code. Every JSON
object written is a one-key tag, so no text from a protocol can be mistaken for structure:

    {"f": [numerator, denominator]}   a Fraction
    {"t": [...]}                      a tuple
    {"s": [...]}                      a frozenset
    {"d": [[key, value], ...]}        a dict (keys are strings)
    {"c": "ClassName", "v": [...]}    a model class, its fields in declaration order
"""

from __future__ import annotations

import json
from fractions import Fraction
from typing import Any

import attrs

from dosing.core import units
from dosing.protocol import guards, model

_MODEL_CLASSES: tuple[type, ...] = (
    model.Source, model.LabInput, model.Reading, model.Ladder, model.DoseSpec,
    model.Monitoring, model.Effect, model.Wait, model.CarriedForward, model.Transition,
    model.State, model.MemorySlot,
    model.Parameter, model.ScenarioVisit, model.Scenario, model.Property, model.Invariant,
    model.Protocol,
    guards.QuantityType, guards.CategoryType, guards.CountType, guards.Comparison,
    guards.Membership, guards.Tally, guards.Either, guards.Conjunction, guards.Disjunction,
    guards.Complement,
    units.Conversion,
)  # fmt: skip
_BY_NAME: dict[str, type] = {cls.__name__: cls for cls in _MODEL_CLASSES}
_FIELDS: dict[type, tuple[str, ...]] = {
    cls: tuple(field.name for field in attrs.fields(cls)) for cls in _MODEL_CLASSES
}


class NotAProtocol(ValueError):
    """The text is not a protocol in this form (damaged, or from another version)."""


def dumps(protocol: model.Protocol) -> str:
    """The protocol as compact JSON."""
    return json.dumps(_plain(protocol), separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> model.Protocol:
    """The protocol back from `dumps`; NotAProtocol for anything else."""
    try:
        value = json.loads(text, object_hook=_built)
    except (ValueError, TypeError, KeyError, RecursionError) as error:
        raise NotAProtocol(f"not a compiled protocol: {type(error).__name__}") from None
    if not isinstance(value, model.Protocol):
        raise NotAProtocol("not a compiled protocol")
    return value


def _plain(value: object) -> Any:
    kind = type(value)
    if value is None or kind in (str, int, bool):
        return value
    if kind is Fraction:
        assert isinstance(value, Fraction)
        return {"f": [value.numerator, value.denominator]}
    if kind is tuple:
        assert isinstance(value, tuple)
        return {"t": [_plain(item) for item in value]}
    if kind is frozenset:
        assert isinstance(value, frozenset)
        # Sorted, so that the same protocol always gives the same text.
        return {"s": sorted((_plain(item) for item in value), key=json.dumps)}
    if kind is dict:
        assert isinstance(value, dict)
        return {"d": [[_key(key), _plain(item)] for key, item in value.items()]}
    fields = _FIELDS.get(kind)
    if fields is None:
        raise TypeError(f"{kind.__name__} is not part of the protocol model")
    return {"c": kind.__name__, "v": [_plain(getattr(value, name)) for name in fields]}


def _key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"a protocol mapping key is {type(key).__name__}, not str")
    return key


def _built(tagged: dict[str, Any]) -> object:
    """Called by json for every object, innermost first."""
    if len(tagged) == 1:
        ((tag, content),) = tagged.items()
        if tag == "f" and _is_int_pair(content):
            return Fraction(content[0], content[1])
        if tag == "t" and type(content) is list:
            return tuple(content)
        if tag == "s" and type(content) is list:
            return frozenset(content)
        if tag == "d" and type(content) is list:
            return {_key(key): item for key, item in content}
    elif len(tagged) == 2 and type(tagged.get("v")) is list:
        cls = _BY_NAME.get(tagged.get("c"))  # type: ignore[arg-type]
        if cls is not None and len(tagged["v"]) == len(_FIELDS[cls]):
            return cls(*tagged["v"])
    raise ValueError("unexpected object")


def _is_int_pair(content: object) -> bool:
    return (
        type(content) is list
        and len(content) == 2
        and all(type(number) is int for number in content)
        and content[1] != 0
    )
