"""Protocol files: YAML text -> checked `Protocol`, with errors that name file, line and path.

Loading goes in stages, each failing with a message that says where:
read (safe YAML, keeping line numbers) -> shape (cattrs, no unknown keys) -> build (parse
guards, resolve units and parameters, check citations) -> load-time checks (`checks`).
The core takes text, not paths: reading the file is the caller's business.
"""

from __future__ import annotations

import hashlib
import re
import typing
from collections.abc import Callable, Mapping
from fractions import Fraction
from typing import Any, Literal

import attrs
import cattrs
import cattrs.cols
import cattrs.gen
import cattrs.v

from dosing.core.characters import shown
from dosing.core.errors import DosingError, ProtocolError, UnitError
from dosing.core.units import KNOWN_SPELLINGS, conversion, format_number, parse_number, split_value
from dosing.core.vocabulary import VOCABULARY, Categorical, Quantitative, category_value, observable
from dosing.protocol import guards
from dosing.protocol.checks import DOSES_PER_DAY
from dosing.protocol.guard_parser import CountOf, Syntax, bind, compile_guard, parse_definition
from dosing.protocol.model import (
    ACTIONS,
    Action,
    CarriedForward,
    DoseSpec,
    Effect,
    Frequency,
    Invariant,
    LabInput,
    Ladder,
    MemorySlot,
    Monitoring,
    Parameter,
    Property,
    Protocol,
    Reading,
    Rounding,
    Scenario,
    ScenarioVisit,
    Source,
    State,
    Transition,
    Wait,
)
from dosing.protocol.yaml_source import read_yaml

# ---------------------------------------------------------------------------- the file's shape


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
class _Where:
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


def _read(text: str, name: str) -> tuple[Any, _Where]:
    data, lines = read_yaml(text, name)
    if not isinstance(data, dict):
        raise ProtocolError(f"{name}:1: a protocol file is a mapping with id, title, states ...")
    return data, _Where(name, lines)


# ---------------------------------------------------------------------------- shape

_LITERAL = re.compile(
    r"^unknown error \((?P<got>.*) not in literal typing\.Literal\[(?P<ok>.*)\]\)$"
)


def _shape(data: Any, where: _Where) -> ProtocolEntry:
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


# ---------------------------------------------------------------------------- build


def load_protocol(text: str, name: str = "<protocol>") -> Protocol:
    """Read, shape, build and check a protocol file's text. Raises ProtocolError."""
    from dosing.protocol.checks import check_protocol

    data, where = _read(text, name)
    entry = _shape(data, where)
    sha = hashlib.sha256(text.encode()).hexdigest()
    protocol = _Builder(entry, where).build(sha)
    check_protocol(protocol, where.error)
    return protocol


_DERIVED_FROM = {"crcl": {"age", "weight", "sex", "creatinine"}, "bsa": {"height", "weight"}}

_NEVER_WAITS = frozenset({"hold", "discontinue", "ineligible"})
"""Actions a rule may not wait for data on (the engine's STOPS): a hold, stop or exclusion is
never skipped because data is missing."""

_TOXICITY_ASSESSMENTS = frozenset({"toxicity", "bleeding"})


def _toxicity_read(when: guards.Guard) -> set[str]:
    """The labs (upper limits and CrCl's creatinine included) and toxicity assessments a
    guard reads: what makes a decrease one driven by toxicity."""
    names = set(guards.names_in(when))
    for derived, parts in _DERIVED_FROM.items():
        if derived in names:
            names |= parts
    return {
        name
        for name in names
        if name in _TOXICITY_ASSESSMENTS
        or (name in VOCABULARY and VOCABULARY[name].role in ("lab", "uln"))
    }


def _reads(states: Mapping[str, State]) -> dict[str, frozenset[str]]:
    reads = {}
    for name, state in states.items():
        names = set().union(*(guards.names_in(t.when) for t in state.transitions))
        for derived, inputs in _DERIVED_FROM.items():
            if derived in names or (derived == "bsa" and any(d.per_m2 for d in state.doses)):
                names |= inputs
        reads[name] = frozenset(names)
    return reads


def _readings(scope: Mapping[str, guards.NameType]) -> dict[str, Reading]:
    """Resolve every known spelling of every quantitative observation once, at compile time."""
    readings = {}
    for name, kind in scope.items():
        entry = VOCABULARY.get(name)
        if entry is None or not isinstance(kind, guards.QuantityType):
            continue
        measure = entry.measure
        assert isinstance(measure, Quantitative)
        spellings = {}
        for spelling in KNOWN_SPELLINGS:
            try:
                spellings[spelling] = conversion(spelling, kind.unit, name, measure.molar_mass)
            except UnitError:
                continue
        to_unit = spellings.get(measure.canonical) or conversion(
            measure.canonical, kind.unit, name, measure.molar_mass
        )
        readings[name] = Reading(
            name=name,
            unit=kind.unit,
            low=to_unit.apply(measure.low),
            high=to_unit.apply(measure.high),
            molar_mass=measure.molar_mass,
            bare_unit=measure.bare_unit,
            spellings=spellings,
            smallest=to_unit.apply(measure.smallest) if measure.smallest else Fraction(0),
        )
    return readings


class _Builder:
    def __init__(self, entry: ProtocolEntry, where: _Where) -> None:
        self.entry = entry
        self.where = where
        self.inputs: set[str] = set()
        self.parameters = {
            key: Parameter(key, str(p.value), p.note) for key, p in entry.parameters.items()
        }
        self.ladders: dict[str, Ladder] = {}
        self.definitions: dict[str, Syntax | CountOf] = {}

    def fail(self, path: str, message: str) -> ProtocolError:
        return self.where.error(path, message)

    def constants(self) -> dict[str, tuple[Fraction, str]]:
        """Site parameters with a unit ('0.75 x10^9/L'): guards may compare against them."""
        found = {}
        for name, parameter in self.parameters.items():
            try:
                value, unit = split_value(parameter.value)
                conversion(unit, unit, name)
            except UnitError:
                continue
            if unit:
                found[name] = (value, unit)
        return found

    def resolve(self, text: str) -> str:
        """A literal, or the value of the site parameter it names."""
        parameter = self.parameters.get(text.strip())
        return parameter.value if parameter else text

    def quantity(self, text: str, unit: str, path: str) -> Fraction:
        resolved = self.resolve(text)
        try:
            value, spelled = split_value(resolved)
            return conversion(spelled, unit, path.rsplit(".", 1)[-1]).apply(value)
        except UnitError as error:
            raise self.fail(path, f"'{resolved}': {error}; expected a value in {unit}") from None

    def build(self, sha: str) -> Protocol:
        entry = self.entry
        sources = {s.id: Source(s.id, s.kind, s.ref, s.cite) for s in entry.sources}
        labs = self.labs()
        facts = tuple(
            self.known(name, "fact", f"inputs.facts[{i}]")
            for i, name in enumerate(entry.inputs.facts)
        )
        assessments = tuple(
            self.known(name, "assessment", f"inputs.assessments[{i}]")
            for i, name in enumerate(entry.inputs.assessments)
        )
        if_not_recorded = {}
        for name, default in entry.inputs.if_not_recorded.items():
            path = f"inputs.if_not_recorded.{name}"
            if name not in assessments:
                raise self.fail(path, f"{name} is not among this protocol's assessments")
            try:
                if_not_recorded[name] = category_value(VOCABULARY[name], default.value)
            except DosingError as error:
                raise self.fail(f"{path}.value", str(error)) from None
        carried = self.carry_forward(assessments, if_not_recorded, sources)
        self.inputs = {*labs, *facts, *assessments}
        self.ladders = self.build_ladders(sources)
        memory = self.memory()
        scope = self.scope(labs, facts, assessments, memory)
        self.definitions = self.build_definitions(scope)
        memory = self.memory_once(memory, scope)
        states = {
            name: self.state(name, state, scope, sources) for name, state in entry.states.items()
        }
        initial = [name for name, state in states.items() if state.initial]
        max_dose = None
        if entry.limits.max_daily_dose is not None:
            max_dose = self.quantity(entry.limits.max_daily_dose, "mg", "limits.max_daily_dose")
        protocol = Protocol(
            id=entry.id,
            title=entry.title,
            drug=entry.drug,
            version=entry.version,
            sha256=sha,
            sources=sources,
            parameters=self.parameters,
            labs=labs,
            facts=facts,
            assessments=assessments,
            if_not_recorded=if_not_recorded,
            memory=memory,
            ladders=self.ladders,
            states=states,
            initial=initial[0] if len(initial) == 1 else "",
            scope=scope,
            constants={name: value for name, (value, _) in self.constants().items()},
            max_daily_dose=max_dose,
            strengths={
                drug: tuple(
                    self.quantity(text, "mg", f"limits.strengths.{drug}[{i}]")
                    for i, text in enumerate(values)
                )
                for drug, values in entry.limits.strengths.items()
            },
            readings=_readings(scope),
            properties=self.properties(labs),
        )
        return attrs.evolve(
            protocol,
            scenarios=self.scenarios(protocol),
            reads=_reads(states),
            invariants=self.invariants(protocol, sources),
            carried_forward=carried,
        )

    def carry_forward(
        self,
        assessments: tuple[str, ...],
        if_not_recorded: Mapping[str, str],
        sources: Mapping[str, Source],
    ) -> dict[str, CarriedForward]:
        """Assessments that rarely change, used at later visits within a maximum age."""
        carried = {}
        for name, entry in self.entry.inputs.carry_forward.items():
            path = f"inputs.carry_forward.{name}"
            if name not in assessments:
                raise self.fail(path, f"{name} is not among this protocol's assessments")
            if name in if_not_recorded:
                raise self.fail(
                    path,
                    f"{name} is taken as a stated value when not recorded (if_not_recorded); "
                    "it cannot also be carried forward",
                )
            age = self.quantity(entry.max_age, "days", f"{path}.max_age")
            if age <= 0:
                raise self.fail(f"{path}.max_age", "a maximum age is a positive duration")
            source = self.cite(entry.source, sources, f"{path}.source")
            carried[name] = CarriedForward(name, age, source)
        return carried

    def invariants(
        self, protocol: Protocol, sources: Mapping[str, Source]
    ) -> tuple[Invariant, ...]:
        """What the sources forbid, in their own words: bound against what can be observed
        (labs, facts, assessments, derived values, days on therapy, site parameters), never
        against the rules' own memory, so that a wrong rule cannot pass its own test."""
        internal = {*protocol.memory, "days_in_state"}  # the dose history is observable
        scope = {name: kind for name, kind in protocol.scope.items() if name not in internal}
        rules = {t.rule for state in protocol.states.values() for t in state.transitions}
        drugs = {dose.drug for state in protocol.states.values() for dose in state.doses}
        found = []
        for index, entry in enumerate(self.entry.invariants):
            path = f"invariants[{index}]"
            forms = {
                "ceiling": entry.ceiling,
                "floor": entry.floor,
                "never": entry.never,
                "stays_at_most_after": entry.stays_at_most_after,
                "recheck_within": entry.recheck_within,
            }
            given = [form for form, value in forms.items() if value is not None]
            if len(given) != 1:
                raise self.fail(
                    path,
                    "an invariant says one thing: exactly one of ceiling, floor, never, "
                    f"stays_at_most_after or recheck_within (found {', '.join(given) or 'none'})",
                )
            kind = given[0]
            if not entry.quote.strip():
                raise self.fail(f"{path}.quote", "quote the source sentence the invariant encodes")
            drug = entry.drug or protocol.drug
            if drug not in drugs:
                raise self.fail(f"{path}.drug", f"'{drug}' is not dosed by this protocol")
            amount = None
            if kind in ("ceiling", "floor"):
                amount = self.daily(str(forms[kind]), f"{path}.{kind}")
            elif kind == "recheck_within":
                amount = self.quantity(str(entry.recheck_within), "days", f"{path}.recheck_within")
            actions = entry.never if entry.never is not None else entry.on
            for number, action in enumerate(actions):
                if action not in (*ACTIONS, "dose"):
                    where = f"{path}.{'never' if entry.never is not None else 'on'}[{number}]"
                    raise self.fail(
                        where, f"'{action}' is not an action ({', '.join(ACTIONS)}, or dose)"
                    )
            events = entry.stays_at_most_after or []
            for key, names in (("after", entry.after), ("stays_at_most_after", events)):
                for number, event in enumerate(names):
                    if event not in ACTIONS and event not in rules:
                        raise self.fail(
                            f"{path}.{key}[{number}]", f"'{event}' is neither an action nor a rule"
                        )
            exempt = entry.until if kind == "stays_at_most_after" else entry.except_
            for number, rule in enumerate(exempt):
                if rule not in rules:
                    key = "until" if kind == "stays_at_most_after" else "except"
                    raise self.fail(f"{path}.{key}[{number}]", f"no rule '{rule}' in this protocol")
            ended_by = [] if kind == "stays_at_most_after" else entry.until
            if ended_by and not (entry.after or entry.once):
                raise self.fail(
                    f"{path}.until", "'until' ends what 'after' or 'once' started: give one"
                )
            for number, event in enumerate(ended_by):
                if event not in ACTIONS and event not in rules:
                    raise self.fail(
                        f"{path}.until[{number}]", f"'{event}' is neither an action nor a rule"
                    )
            if entry.within is not None and not entry.after:
                raise self.fail(f"{path}.within", "'within' counts from an event: give 'after'")
            if entry.times < 1:
                raise self.fail(f"{path}.times", "times is a whole number, 1 or more")
            found.append(
                Invariant(
                    name=entry.name,
                    kind=kind,  # type: ignore[arg-type]
                    source=self.cite(entry.source, sources, f"{path}.source"),
                    quote=" ".join(entry.quote.split()),
                    amount=amount,
                    drug=drug,
                    actions=frozenset(actions),
                    while_=None
                    if entry.while_ is None
                    else self.guard(entry.while_, scope, f"{path}.while"),
                    while_text=" ".join((entry.while_ or "").split()),
                    once=None
                    if entry.once is None
                    else self.guard(entry.once, scope, f"{path}.once"),
                    once_text=" ".join((entry.once or "").split()),
                    after=frozenset(events if kind == "stays_at_most_after" else entry.after),
                    times=entry.times,
                    within_days=None
                    if entry.within is None
                    else self.quantity(entry.within, "days", f"{path}.within"),
                    exempt=frozenset(exempt),
                    ended_by=frozenset(ended_by),
                    below=entry.below,
                    line=self.where.line(path),
                )
            )
        return tuple(found)

    def daily(self, text: str, path: str) -> Fraction:
        """'25 mg bid' or 'child_max_dose qd' (a site parameter and a frequency): mg per day."""
        amount, _, frequency = text.strip().rpartition(" ")
        if frequency not in DOSES_PER_DAY or not amount:
            raise self.fail(
                path,
                f"'{text}': write a dose and how often, e.g. '25 mg bid' "
                f"({', '.join(DOSES_PER_DAY)})",
            )
        return self.quantity(amount, "mg", path) * DOSES_PER_DAY[frequency]

    def properties(self, labs: Mapping[str, LabInput]) -> tuple[Property, ...]:
        found = []
        for index, entry in enumerate(self.entry.properties):
            path = f"properties[{index}]"
            for name in entry.lower_never_raises:
                if name not in labs:
                    raise self.fail(
                        f"{path}.lower_never_raises", f"'{name}' is not a lab of this protocol"
                    )
            for flag in ("within_max_daily_dose", "rules_within_max_daily_dose"):
                if getattr(entry, flag) and self.entry.limits.max_daily_dose is None:
                    raise self.fail(path, f"{flag} needs limits.max_daily_dose")
            found.append(
                Property(
                    entry.name,
                    tuple(entry.lower_never_raises),
                    entry.within_max_daily_dose,
                    entry.rules_within_max_daily_dose,
                )
            )
        return tuple(found)

    def known(self, name: str, role: str, path: str) -> str:
        try:
            found = observable(name)
        except DosingError as error:
            raise self.fail(path, str(error)) from None
        if found.role != role:
            raise self.fail(path, f"{name} is a {found.role}, not a {role}")
        return found.name

    def labs(self) -> dict[str, LabInput]:
        labs = {}
        for key, lab in self.entry.inputs.labs.items():
            path = f"inputs.labs.{key}"
            name = self.known(key, "lab", path)
            measure = VOCABULARY[name].measure
            assert isinstance(measure, Quantitative)
            unit = lab.unit or measure.canonical
            try:
                to_unit = conversion(measure.canonical, unit, name, measure.molar_mass)
            except UnitError as error:
                raise self.fail(f"{path}.unit", str(error)) from None
            age = self.quantity(lab.max_age, "days", f"{path}.max_age")
            if age.denominator != 1 or age < 0:
                raise self.fail(f"{path}.max_age", "a maximum age is a whole number of days")
            uln = None
            if lab.uln is not None:
                uln = self._lab_quantity(lab.uln, unit, name, measure.molar_mass, f"{path}.uln")
            labs[name] = LabInput(
                name=name,
                label=VOCABULARY[name].label,
                unit=unit,
                low=to_unit.apply(measure.low),
                high=to_unit.apply(measure.high),
                max_age_days=int(age),
                molar_mass=measure.molar_mass,
                uln_default=uln,
                after_dose_change=lab.after_dose_change,
                steady_after_days=self.steady_after(lab, path),
            )
        return labs

    def steady_after(self, lab: LabEntry, path: str) -> int:
        if lab.steady_after is None:
            return 0
        if not lab.after_dose_change:
            raise self.fail(f"{path}.steady_after", "steady_after needs after_dose_change: true")
        days = self.quantity(lab.steady_after, "days", f"{path}.steady_after")
        if days.denominator != 1 or days < 0:
            raise self.fail(f"{path}.steady_after", "a wait is a whole number of days")
        return int(days)

    def _lab_quantity(self, text: str, unit: str, name: str, mm: str | None, path: str) -> Fraction:
        resolved = self.resolve(text)
        try:
            value, spelled = split_value(resolved)
            return conversion(spelled, unit, name, mm).apply(value)
        except UnitError as error:
            raise self.fail(path, f"'{resolved}': {error}") from None

    def build_ladders(self, sources: Mapping[str, Source]) -> dict[str, Ladder]:
        ladders = {}
        for name, entry in self.entry.ladders.items():
            path = f"ladders.{name}"
            levels = tuple(
                self.quantity(level, "mg", f"{path}.levels[{i}]")
                for i, level in enumerate(entry.levels)
            )
            if not levels or list(levels) != sorted(set(levels)) or levels[0] <= 0:
                raise self.fail(
                    f"{path}.levels", "levels are positive doses, lowest first, each once"
                )
            source = self.cite(entry.source, sources, f"{path}.source")
            ladders[name] = Ladder(name, entry.drug, entry.frequency, levels, source)
        return ladders

    def fraction(self, text: str, path: str) -> Fraction:
        """A plain share such as 0.5 (a literal or a site parameter), between 0 and 1."""
        resolved = self.resolve(text)
        try:
            value = parse_number(resolved)
        except UnitError:
            raise self.fail(path, f"'{resolved}' is not a plain number such as 0.5") from None
        if not 0 < value <= 1:
            raise self.fail(path, f"'{resolved}' is a share of the dose, above 0 and at most 1")
        return value

    def count(self, text: str, path: str) -> Fraction:
        """A whole number of times (holds so far), written as digits."""
        if not re.fullmatch(r"[0-9]{1,9}", str(text).strip()):
            raise self.fail(path, f"'{text}' is not a count; a count is a whole number such as 0")
        return Fraction(int(text))

    def dose_amount(self, protocol: Protocol, name: str, text: str, path: str) -> Fraction:
        """A remembered dose: a level of its ladder, or a multiple of its step."""
        slot = protocol.memory[name]
        if slot.ladder is not None:
            return self.level(text, protocol.ladders[slot.ladder], path)
        amount = self.quantity(text, "mg", path)
        assert slot.step is not None
        if amount <= 0 or (amount / slot.step).denominator != 1:
            raise self.fail(path, f"'{text}' is not a multiple of {format_number(slot.step)} mg")
        return amount

    def level(self, text: str, ladder: Ladder, path: str) -> Fraction:
        amount = self.quantity(text, "mg", path)
        if amount not in ladder.levels:
            levels = ", ".join(f"{format_number(level)} mg" for level in ladder.levels)
            raise self.fail(path, f"'{text}' is not a level of ladder {ladder.name} ({levels})")
        return amount

    def memory(self) -> dict[str, MemorySlot]:
        slots = {}
        for name, slot in self.entry.memory.items():
            initial: Fraction | str
            step = max_change = None
            if slot.kind == "dose" and slot.ladder is None:
                path = f"memory.{name}"
                if slot.step is None or slot.max_change is None:
                    raise self.fail(path, "a dose memory has a ladder, or a step and a max_change")
                step = self.quantity(slot.step, "mg", f"{path}.step")
                max_change = self.fraction(slot.max_change, f"{path}.max_change")
                initial = self.quantity(slot.initial, "mg", f"{path}.initial")
                if step <= 0 or initial <= 0 or (initial / step).denominator != 1:
                    raise self.fail(
                        f"{path}.initial", "the initial dose is a positive multiple of its step"
                    )
            elif slot.kind == "dose":
                ladder = self.ladders.get(slot.ladder or "")
                if ladder is None:
                    known = ", ".join(self.ladders) or "none declared"
                    raise self.fail(
                        f"memory.{name}.ladder", f"a dose memory names its ladder ({known})"
                    )
                initial = self.level(slot.initial, ladder, f"memory.{name}.initial")
            elif slot.kind == "count":
                initial = self.count(slot.initial, f"memory.{name}.initial")
            else:
                initial = slot.initial
                if initial != "none" and initial not in self.entry.states:
                    raise self.fail(f"memory.{name}.initial", f"'{initial}' is not a state")
            if slot.once is not None and slot.kind != "count":
                raise self.fail(
                    f"memory.{name}.once", "only a count can be set 'once' a guard holds"
                )
            if slot.track is not None and (slot.kind != "count" or slot.once is not None):
                raise self.fail(
                    f"memory.{name}.track",
                    "only a count can track a guard, and not also be set 'once'",
                )
            slots[name] = MemorySlot(
                name, slot.kind, initial, slot.note, slot.ladder, step, max_change
            )
        return slots

    def memory_once(
        self, slots: dict[str, MemorySlot], scope: guards.Scope
    ) -> dict[str, MemorySlot]:
        """Counts set at the first visit where a guard holds, bound once the scope is known."""
        for name, entry in self.entry.memory.items():
            if entry.once is not None:
                guard = self.guard(entry.once, scope, f"memory.{name}.once")
                text = " ".join(entry.once.split())
                slots[name] = attrs.evolve(slots[name], once=guard, once_text=text)
            if entry.track is not None:
                guard = self.guard(entry.track, scope, f"memory.{name}.track")
                slots[name] = attrs.evolve(slots[name], track=guard)
        return slots

    def scope(
        self,
        labs: Mapping[str, LabInput],
        facts: tuple[str, ...],
        assessments: tuple[str, ...],
        memory: Mapping[str, MemorySlot],
    ) -> dict[str, guards.NameType]:
        scope: dict[str, guards.NameType] = {}
        for name, (_, unit) in self.constants().items():
            scope[name] = guards.QuantityType(unit, name.replace("_", " "))
        for lab in labs.values():
            scope[lab.name] = guards.QuantityType(lab.unit, lab.label, lab.molar_mass)
            uln = f"{lab.name}_uln"
            if uln in VOCABULARY:
                scope[uln] = guards.QuantityType(lab.unit, f"{lab.label} ULN", lab.molar_mass)
        for name in (*facts, *assessments):
            measure = VOCABULARY[name].measure
            label = VOCABULARY[name].label
            if isinstance(measure, Categorical):
                scope[name] = guards.CategoryType(measure.values, label)
            else:
                scope[name] = guards.QuantityType(measure.canonical, label)
        if {"height", "weight"} <= set(facts):
            scope["bsa"] = guards.QuantityType("m^2", "BSA")
        if {"age", "weight", "sex"} <= set(facts) and "creatinine" in labs:
            scope["crcl"] = guards.QuantityType("mL/min", "CrCl")
        scope["days_on_therapy"] = guards.QuantityType("days", "days on therapy")
        scope["days_in_state"] = guards.QuantityType("days", "days in this state")
        scope["days_at_dose"] = guards.QuantityType("days", "days at this dose")
        for slot in memory.values():
            if slot.kind == "dose":
                scope[slot.name] = guards.QuantityType("mg", slot.name.replace("_", " "))
            elif slot.kind == "count":
                scope[slot.name] = guards.CountType(slot.name.replace("_", " "))
            else:
                values = (*self.entry.states, "none")
                scope[slot.name] = guards.CategoryType(values, slot.name.replace("_", " "))
        return scope

    def build_definitions(self, scope: guards.Scope) -> dict[str, Syntax | CountOf]:
        """Named conditions and counts, each usable by name in the guards after it."""
        definitions: dict[str, Syntax | CountOf] = {}
        for name, text in self.entry.definitions.items():
            path = f"definitions.{name}"
            if name in scope or name == "count":
                raise self.fail(path, f"'{name}' is already a name in this protocol")
            try:
                tree = parse_definition(text, definitions)
                # Bound here too, so a mistake is reported at the definition itself.
                for part in tree.items if isinstance(tree, CountOf) else (tree,):
                    bind(part, scope)
            except ProtocolError as error:
                raise self.fail(path, str(error)) from None
            definitions[name] = tree
        return definitions

    def guard(self, text: str, scope: guards.Scope, path: str) -> guards.Guard:
        try:
            return compile_guard(text, scope, self.definitions)
        except ProtocolError as error:
            raise self.fail(path, str(error)) from None

    def cite(self, text: str, sources: Mapping[str, Source], path: str) -> str:
        source_id = text.split(":", 1)[0].strip()
        if not text.strip():
            raise self.fail(path, "every rule cites its source (a seed file or a label fact)")
        if source_id not in sources:
            raise self.fail(
                path,
                f"cites '{source_id}', which is not among the sources ({', '.join(sources)}); "
                "write 'SOURCE-ID: where in it'",
            )
        return text

    def state(
        self, name: str, entry: StateEntry, scope: guards.Scope, sources: Mapping[str, Source]
    ) -> State:
        path = f"states.{name}"
        transitions = tuple(
            self.transition(name, index, t, scope, sources)
            for index, t in enumerate(entry.transitions)
        )
        for index, transition in enumerate(transitions):
            if transition.waits is not None and entry.stay is None:
                raise self.fail(
                    f"{path}.transitions[{index}].waits_for",
                    f"rule '{transition.rule}' can wait for data only in a state that says "
                    "what staying means (stay: continue, hold ...): there is nothing to go on "
                    "with meanwhile",
                )
        monitoring = tuple(
            Monitoring(
                every_days=self.quantity(m.every, "days", f"{path}.monitoring[{i}].every"),
                when=None
                if m.when is None
                else self.guard(m.when, scope, f"{path}.monitoring[{i}].when"),
                source=self.cite(m.source, sources, f"{path}.monitoring[{i}].source"),
                note=m.note,
            )
            for i, m in enumerate(entry.monitoring)
        )
        doses = tuple(self.dose(d, f"{path}.doses[{i}]") for i, d in enumerate(entry.doses))
        return State(
            name=name,
            doses=doses,
            transitions=transitions,
            monitoring=monitoring,
            stay=entry.stay,
            source=self.cite(entry.source, sources, f"{path}.source"),
            initial=entry.initial,
            final=entry.final,
            note=entry.note,
        )

    def dose(self, entry: DoseEntry, path: str) -> DoseSpec:
        if entry.ladder is not None:
            return self.ladder_dose(entry, path)
        if entry.at is not None:
            slot = self.entry.memory.get(entry.at)
            if slot is None or slot.kind != "dose" or slot.ladder is not None:
                raise self.fail(f"{path}.at", f"'{entry.at}' is not a dose memory with a step")
            if entry.drug is None or entry.frequency is None or entry.amount or entry.per_m2:
                raise self.fail(path, "a remembered dose names its drug and frequency, no amount")
            return DoseSpec(drug=entry.drug, frequency=entry.frequency, level_from=entry.at)
        if (entry.amount is None) == (entry.per_m2 is None):
            raise self.fail(path, "a dose has one of: amount, per_m2, or ladder with at")
        if entry.drug is None or entry.frequency is None:
            raise self.fail(path, "a dose names its drug and frequency")
        rounding = self.resolve(entry.rounding)
        if rounding not in ("nearest", "down"):
            raise self.fail(f"{path}.rounding", f"'{rounding}' is not one of nearest, down")
        rounding_mode: Rounding = "nearest" if rounding == "nearest" else "down"
        if entry.per_m2 is not None and entry.max is None:
            raise self.fail(
                path,
                "a dose per m² needs a ceiling (max: mg per dose, or a site parameter): "
                "a large BSA must not give an unbounded dose",
            )
        if entry.max is not None and entry.per_m2 is None:
            raise self.fail(f"{path}.max", "only a dose per m² takes a ceiling (max)")
        try:
            return DoseSpec(
                drug=entry.drug,
                frequency=entry.frequency,
                amount=None
                if entry.amount is None
                else self.quantity(entry.amount, "mg", f"{path}.amount"),
                per_m2=None
                if entry.per_m2 is None
                else self.quantity(entry.per_m2, "mg/m^2", f"{path}.per_m2"),
                round_to=None
                if entry.round_to is None
                else self.quantity(entry.round_to, "mg", f"{path}.round_to"),
                rounding=rounding_mode,
                ceiling=None
                if entry.max is None
                else self.quantity(entry.max, "mg", f"{path}.max"),
                tolerance=None
                if entry.tolerance is None
                else self.fraction(entry.tolerance, f"{path}.tolerance"),
                ceiling_name=(
                    entry.max.strip()
                    if entry.max is not None and entry.max.strip() in self.parameters
                    else ""
                ),
            )
        except ValueError as error:
            raise self.fail(path, str(error)) from None

    def ladder_dose(self, entry: DoseEntry, path: str) -> DoseSpec:
        ladder = self.ladders.get(entry.ladder or "")
        if ladder is None:
            raise self.fail(
                f"{path}.ladder", f"no ladder '{entry.ladder}' ({', '.join(self.ladders)})"
            )
        slot = self.entry.memory.get(entry.at or "")
        if slot is None or slot.kind != "dose" or slot.ladder != ladder.name:
            raise self.fail(f"{path}.at", f"'at' names a dose memory on ladder {ladder.name}")
        if entry.amount or entry.per_m2 or entry.drug or entry.frequency:
            raise self.fail(
                path, "a ladder dose takes its drug, frequency and amount from the ladder"
            )
        return DoseSpec(drug=ladder.drug, frequency=ladder.frequency, level_from=entry.at)

    def transition(
        self,
        origin: str,
        index: int,
        entry: TransitionEntry,
        scope: guards.Scope,
        sources: Mapping[str, Source],
    ) -> Transition:
        path = f"states.{origin}.transitions[{index}]"
        when = self.guard(entry.when, scope, f"{path}.when")
        effects = tuple(
            self.effect(k, v, f"{path}.remember.{k}") for k, v in entry.remember.items()
        )
        waits = None
        if entry.waits_for is not None:
            waits = self.wait(entry, when, effects, sources, f"{path}.waits_for")
        return Transition(
            rule=entry.rule,
            origin=origin,
            target=entry.to,
            when=when,
            when_text=" ".join(entry.when.split()),
            priority=entry.priority,
            action=entry.action,
            source=self.cite(entry.source, sources, f"{path}.source"),
            message=entry.message,
            effects=effects,
            path=path,
            line=self.where.line(path),
            waits=waits,
        )

    def wait(
        self,
        entry: TransitionEntry,
        when: guards.Guard,
        effects: tuple[Effect, ...],
        sources: Mapping[str, Source],
        path: str,
    ) -> Wait:
        """A rule's "not yet": refused where missing data must never excuse a dose."""
        declared = entry.waits_for
        assert declared is not None
        if entry.action in _NEVER_WAITS:
            raise self.fail(
                path,
                f"rule '{entry.rule}' is a {entry.action} rule: a hold, stop or exclusion is "
                "never skipped because its data is missing, so it cannot wait for data",
            )
        if entry.action == "decrease":
            scaled = {e.value for e in effects if e.kind == "scale" and isinstance(e.value, str)}
            toxic = sorted(_toxicity_read(when) - scaled)
            if toxic:
                raise self.fail(
                    path,
                    f"rule '{entry.rule}' is a decrease that reads {', '.join(toxic)}: a "
                    "decrease driven by toxicity cannot wait for data; only a taper (no lab "
                    "or toxicity read) or a proportional adjustment to a target level "
                    "('scale by') may",
                )
        if not declared.data:
            raise self.fail(f"{path}.data", "name the observations the rule waits for")
        for number, name in enumerate(declared.data):
            if name not in self.inputs:
                raise self.fail(
                    f"{path}.data[{number}]",
                    f"'{name}' is not a lab, fact or assessment of this protocol "
                    f"({', '.join(sorted(self.inputs))})",
                )
        if not declared.because.strip():
            raise self.fail(f"{path}.because", "say why missing data means 'not yet' here")
        recheck = None
        if declared.recheck is not None:
            recheck = self.quantity(declared.recheck, "days", f"{path}.recheck")
            if recheck <= 0:
                raise self.fail(f"{path}.recheck", "a recheck is a positive duration")
        at_most = None
        if declared.at_most is not None:
            at_most = self.quantity(declared.at_most, "days", f"{path}.at_most")
            if at_most <= 0:
                raise self.fail(f"{path}.at_most", "'at_most' is a positive duration")
        return Wait(
            data=tuple(declared.data),
            because=" ".join(declared.because.split()),
            source=self.cite(declared.source, sources, f"{path}.source"),
            recheck_days=recheck,
            at_most_days=at_most,
        )

    def effect(self, name: str, text: str, path: str) -> Effect:
        slot = self.entry.memory.get(name)
        if slot is None:
            raise self.fail(path, f"'{name}' is not declared under memory")
        text = text.strip()
        added = re.fullmatch(rf"{re.escape(name)}\s*([+-])\s*([0-9]{{1,9}})", text)
        if slot.kind == "count" and added:
            step = Fraction(added[2])
            return Effect(name, "add", step if added[1] == "+" else -step)
        if slot.kind == "count" and re.fullmatch(r"[0-9]{1,9}", text):
            return Effect(name, "set", Fraction(text))
        if slot.kind == "state" and text == "state":
            return Effect(name, "state", None)
        if slot.kind == "state" and (text in self.entry.states or text == "none"):
            return Effect(name, "set", text)
        scaled = re.fullmatch(r"scale by (\w+) / (\w+)", text)
        if slot.kind == "dose" and slot.ladder is None and scaled:
            return self.scale_effect(name, scaled[1], scaled[2], path)
        if slot.kind == "dose" and slot.ladder is not None:
            ladder = self.ladders[slot.ladder]
            if text in ("up", "down"):
                return Effect(name, "up" if text == "up" else "down", None, ladder.levels)
            other = self.entry.memory.get(text)
            if other is not None and other.kind == "dose" and other.ladder == slot.ladder:
                return Effect(name, "copy", text)
            if re.match(r"^[0-9]", text):
                return Effect(name, "set", self.level(text, ladder, path))
        expected = {
            "count": f"{name} + N, or a number",
            "state": "state, none or a state name",
            "dose": "up, down, a level in mg, another dose memory on the same ladder, "
            "or (for a dose with a step) 'scale by TARGET / LAB'",
        }[slot.kind]
        raise self.fail(path, f"'{text}' is not an update dosing understands; expected {expected}")

    def scale_effect(self, name: str, target: str, measured: str, path: str) -> Effect:
        lab = self.entry.inputs.labs.get(measured)
        if lab is None:
            raise self.fail(path, f"'{measured}' is not one of this protocol's labs")
        measure = VOCABULARY[measured].measure
        assert isinstance(measure, Quantitative)
        unit = lab.unit or measure.canonical
        amount = self._lab_quantity(target, unit, measured, measure.molar_mass, path)
        return Effect(name, "scale", measured, target=amount)

    def scenarios(self, protocol: Protocol) -> tuple[Scenario, ...]:
        defaults = self.entry.scenario_defaults
        scenarios = []
        for index, entry in enumerate(self.entry.scenarios):
            path = f"scenarios[{index}]"
            visits = []
            for number, visit in enumerate(entry.visits):
                observed: dict[str, tuple[str, int]] = {}
                base = {**defaults.labs} if entry.defaults else {}
                for key, value in {
                    **defaults.patient,
                    **entry.patient,
                    **base,
                    **visit.labs,
                }.items():
                    if key in visit.omit:
                        continue
                    observed[key] = (str(value), visit.drawn_days_before.get(key, 0))
                expect = visit.expect
                visits.append(
                    ScenarioVisit(
                        day=visit.day,
                        observations=observed,
                        expect_state=expect.state,
                        expect_action=expect.action,
                        expect_doses=None if expect.doses is None else tuple(expect.doses),
                        expect_reasons=tuple(expect.reasons),
                        expect_warnings=tuple(expect.warnings),
                        expect_next_check_days=expect.next_check_in_days,
                        expect_rule=expect.rule,
                    )
                )
                if expect.state is not None and expect.state not in protocol.states:
                    raise self.fail(
                        f"{path}.visits[{number}].expect.state", f"no state '{expect.state}'"
                    )
            start_state = entry.start.state if entry.start else None
            if start_state is not None and start_state not in protocol.states:
                raise self.fail(f"{path}.start.state", f"no state '{start_state}'")
            scenarios.append(
                Scenario(
                    name=entry.name,
                    visits=tuple(visits),
                    start_state=start_state,
                    start_memory=self.start_memory(entry.start, protocol, f"{path}.start.memory"),
                    start_days_on_therapy=entry.start.days_on_therapy if entry.start else None,
                    start_days_at_dose=entry.start.days_at_dose if entry.start else None,
                    start_days_in_state=entry.start.days_in_state if entry.start else None,
                    line=self.where.line(path),
                    quote=entry.quote,
                )
            )
        return tuple(scenarios)

    def start_memory(
        self, start: StartEntry | None, protocol: Protocol, path: str
    ) -> dict[str, Fraction | str]:
        memory: dict[str, Fraction | str] = {}
        for name, value in (start.memory if start else {}).items():
            slot = protocol.memory.get(name)
            if slot is None:
                raise self.fail(f"{path}.{name}", f"'{name}' is not declared under memory")
            if slot.kind == "dose":
                memory[name] = self.dose_amount(protocol, name, value, f"{path}.{name}")
            else:
                memory[name] = (
                    self.count(value, f"{path}.{name}") if slot.kind == "count" else value
                )
        return memory
