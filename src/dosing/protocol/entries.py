"""A protocol file's shape: the entries cattrs structures from the YAML, with no unknown key
allowed, and the path-addressed messages (`states.hold.transitions[1].when: ...`) with their
line numbers.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable
from typing import Any, Literal

import attrs
import cattrs
import cattrs.cols
import cattrs.gen
import cattrs.v

from dosing.core.characters import shown
from dosing.core.errors import ProtocolError
from dosing.protocol.model import (
    Action,
    Frequency,
)
from dosing.protocol.yaml_source import read_yaml


@attrs.frozen
class SourceEntry:
    id: str
    kind: Literal["trial", "label", "paper", "facts", "site"]
    ref: str
    cite: str


@attrs.frozen
class ParameterEntry:
    value: str
    note: str


@attrs.frozen
class LabEntry:
    max_age: str
    uln: str | None = None
    unit: str | None = None
    after_dose_change: bool = False
    steady_after: str | None = None


@attrs.frozen
class NotRecordedEntry:
    value: str
    note: str


@attrs.frozen
class CarryForwardEntry:
    max_age: str
    source: str


@attrs.frozen
class InputsEntry:
    labs: dict[str, LabEntry]
    facts: list[str] = attrs.Factory(list)
    assessments: list[str] = attrs.Factory(list)
    if_not_recorded: dict[str, NotRecordedEntry] = attrs.Factory(dict)
    carry_forward: dict[str, CarryForwardEntry] = attrs.Factory(dict)


@attrs.frozen
class MemoryEntry:
    kind: Literal["count", "state", "dose"]
    initial: str
    note: str
    ladder: str | None = None
    step: str | None = None
    max_change: str | None = None
    once: str | None = None
    track: str | None = None


@attrs.frozen
class LadderEntry:
    drug: str
    frequency: Frequency
    levels: list[str]
    source: str


@attrs.frozen
class DoseEntry:
    drug: str | None = None
    frequency: Frequency | None = None
    amount: str | None = None
    ladder: str | None = None
    at: str | None = None
    per_m2: str | None = None
    round_to: str | None = None
    rounding: str = "nearest"
    max: str | None = None
    tolerance: str | None = None


@attrs.frozen
class MonitoringEntry:
    every: str
    source: str
    when: str | None = None
    note: str = ""


@attrs.frozen
class WaitEntry:
    data: list[str]
    because: str
    source: str
    recheck: str | None = None
    at_most: str | None = None


@attrs.frozen
class TransitionEntry:
    rule: str
    to: str
    when: str
    action: Action
    source: str
    message: str
    priority: int = 0
    remember: dict[str, str] = attrs.Factory(dict)
    waits_for: WaitEntry | None = None


@attrs.frozen
class StateEntry:
    source: str
    doses: list[DoseEntry] = attrs.Factory(list)
    initial: bool = False
    final: bool = False
    stay: Action | None = None
    note: str = ""
    monitoring: list[MonitoringEntry] = attrs.Factory(list)
    transitions: list[TransitionEntry] = attrs.Factory(list)


@attrs.frozen
class ExpectEntry:
    state: str | None = None
    action: Action | None = None
    doses: list[str] | None = None
    reasons: list[str] = attrs.Factory(list)
    warnings: list[str] = attrs.Factory(list)
    next_check_in_days: int | None = None
    rule: str | None = None


@attrs.frozen
class VisitEntry:
    expect: ExpectEntry
    day: int = 0
    labs: dict[str, str] = attrs.Factory(dict)
    drawn_days_before: dict[str, int] = attrs.Factory(dict)
    omit: list[str] = attrs.Factory(list)


@attrs.frozen
class StartEntry:
    state: str
    memory: dict[str, str] = attrs.Factory(dict)
    days_on_therapy: int | None = None
    days_at_dose: int | None = None
    days_in_state: int | None = None


@attrs.frozen
class ScenarioEntry:
    name: str
    visits: list[VisitEntry]
    start: StartEntry | None = None
    patient: dict[str, str] = attrs.Factory(dict)
    defaults: bool = True
    quote: str = ""


@attrs.frozen
class ScenarioDefaults:
    patient: dict[str, str] = attrs.Factory(dict)
    labs: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class PropertyEntry:
    name: str
    lower_never_raises: list[str] = attrs.Factory(list)
    within_max_daily_dose: bool = False
    rules_within_max_daily_dose: bool = False


@attrs.frozen
class InvariantEntry:
    name: str
    source: str
    quote: str
    ceiling: str | None = None
    floor: str | None = None
    never: list[str] | None = None
    stays_at_most_after: list[str] | None = None
    recheck_within: str | None = None
    drug: str | None = None
    on: list[str] = attrs.Factory(list)
    while_: str | None = attrs.field(default=None, metadata={"key": "while"})
    once: str | None = None
    after: list[str] = attrs.Factory(list)
    times: int = 1
    within: str | None = None
    except_: list[str] = attrs.field(factory=list, metadata={"key": "except"})
    until: list[str] = attrs.Factory(list)
    below: bool = False


@attrs.frozen
class LimitsEntry:
    max_daily_dose: str | None = None
    strengths: dict[str, list[str]] = attrs.Factory(dict)
    """Per drug, the strengths available (tablets, capsules): doses must be made of them."""


@attrs.frozen
class ProtocolEntry:
    id: str
    title: str
    drug: str
    version: str
    sources: list[SourceEntry]
    inputs: InputsEntry
    states: dict[str, StateEntry]
    limits: LimitsEntry = attrs.Factory(LimitsEntry)
    parameters: dict[str, ParameterEntry] = attrs.Factory(dict)
    definitions: dict[str, str] = attrs.Factory(dict)
    ladders: dict[str, LadderEntry] = attrs.Factory(dict)
    memory: dict[str, MemoryEntry] = attrs.Factory(dict)
    properties: list[PropertyEntry] = attrs.Factory(list)
    invariants: list[InvariantEntry] = attrs.Factory(list)
    scenario_defaults: ScenarioDefaults = attrs.Factory(ScenarioDefaults)
    scenarios: list[ScenarioEntry] = attrs.Factory(list)


_converter = cattrs.Converter(forbid_extra_keys=True)


class _WrongType(ValueError):
    """A value of the wrong type in the file: refused, never coerced (priority: 1.5 once
    became 1, id: [x] became the text "['x']", initial: no became true)."""


def _found(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"'{shown(value)}'"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return shown(str(value))


def _text(value: object, _: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a whole number where text is read (a lab typed as 45)
    raise _WrongType(f"expected text, found {_found(value)}")


def _whole(value: object, _: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _WrongType(f"expected a whole number, found {_found(value)}")


def _flag(value: object, _: object) -> bool:
    if isinstance(value, bool):
        return value
    raise _WrongType(f"expected true or false, found {_found(value)}")


def _only(kind: type, words: str, factory: Callable[[Any], Callable[[Any, Any], Any]]) -> Any:
    """A hook factory that refuses anything but `kind`, then structures as cattrs would."""

    def make(target: Any) -> Callable[[Any, Any], Any]:
        inner = factory(target)

        def structure(value: Any, type_: Any) -> Any:
            if not isinstance(value, kind):
                raise _WrongType(f"expected {words}, found {_found(value)}")
            return inner(value, type_)

        return structure

    return make


def _origin(type_: Any) -> Any:
    return typing.get_origin(type_)


_converter.register_structure_hook(str, _text)
_converter.register_structure_hook(int, _whole)
_converter.register_structure_hook(bool, _flag)
_converter.register_structure_hook_factory(
    lambda t: _origin(t) is list,
    _only(list, "a list", lambda t: cattrs.cols.list_structure_factory(t, _converter)),
)
_converter.register_structure_hook_factory(
    lambda t: _origin(t) is dict,
    _only(dict, "a mapping", lambda t: cattrs.cols.mapping_structure_factory(t, _converter)),
)
_converter.register_structure_hook_factory(
    attrs.has,
    _only(
        dict,
        "a mapping",
        lambda t: _structure_entry(t),
    ),
)


def _structure_entry(cls: type) -> Any:
    """An entry's structure function: extra keys refused; a field whose YAML key is a Python
    keyword ('while', 'except') reads that key, named in its metadata."""
    renames = {
        field.name: cattrs.gen.override(rename=field.metadata["key"])
        for field in attrs.fields(cls)
        if "key" in field.metadata
    }
    return cattrs.gen.make_dict_structure_fn(
        cls,
        _converter,
        _cattrs_forbid_extra_keys=True,
        **renames,  # type: ignore[arg-type]
    )


def _message(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, _WrongType):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


# ---------------------------------------------------------------------------- read


_PARENT = re.compile(r"(\.?[^.\[\]]*|\[[0-9]+\])$")
"""The last step of a path ('.key', 'key' at the top, or '[index]'): removed to get its parent."""


@attrs.define
class Where:
    """Turns a path into 'file:line: path' for messages."""

    name: str
    lines: dict[str, int]

    def line(self, path: str) -> int:
        """The line of `path`, or of its nearest ancestor in the file (a missing key's
        mapping)."""
        while path and path not in self.lines:
            parent = _PARENT.sub("", path, count=1)
            path = parent if parent != path else ""
        return self.lines.get(path, 1)

    def error(self, path: str, message: str) -> ProtocolError:
        return ProtocolError(f"{self.name}:{self.line(path)}: {path}: {message}")


def read_document(text: str, name: str) -> tuple[Any, Where]:
    data, lines = read_yaml(text, name)
    if not isinstance(data, dict):
        raise ProtocolError(f"{name}:1: a protocol file is a mapping with id, title, states ...")
    return data, Where(name, lines)


# ---------------------------------------------------------------------------- shape

_LITERAL = re.compile(
    r"^unknown error \((?P<got>.*) not in literal typing\.Literal\[(?P<ok>.*)\]\)$"
)


def shape(data: Any, where: Where) -> ProtocolEntry:
    try:
        return _converter.structure(data, ProtocolEntry)
    except Exception as exc:  # cattrs groups every problem; report the first, by line
        problems = []
        for message in cattrs.transform_error(exc, path="$", format_exception=_message):
            text, _, raw_path = message.rpartition(" @ ")
            path = re.sub(r"\['([^']*)'\]", r".\1", raw_path).removeprefix("$").lstrip(".")
            literal = _LITERAL.match(text)
            if literal:
                text = f"'{literal['got']}' is not one of {literal['ok'].replace(chr(39), '')}"
            elif text.startswith("extra fields found"):
                text = text.replace("extra fields found", "unknown key")
            elif text == "required field missing":
                text = "required key missing"
            problems.append((where.line(path), path, text))
        line, path, text = min(problems)
        where_in_file = f"{path}: " if path else ""  # a top-level key has no path
        raise ProtocolError(f"{where.name}:{line}: {where_in_file}{text}") from None
