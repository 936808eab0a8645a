"""Protocol files: YAML text -> checked `Protocol`, with errors that name file, line and path.

Loading goes in stages, each failing with a message that says where:
read (safe YAML, keeping line numbers) -> shape (cattrs, no unknown keys) -> build (parse
guards, resolve units and parameters, check citations) -> load-time checks (`checks`).
The core takes text, not paths: reading the file is the caller's business.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from fractions import Fraction

import attrs

from dosing.core.errors import DosingError, UnitError
from dosing.core.units import KNOWN_SPELLINGS, conversion
from dosing.core.vocabulary import VOCABULARY, Quantitative, category_value
from dosing.protocol import guards
from dosing.protocol.build_checks import ChecksBuilder
from dosing.protocol.build_context import DERIVED_FROM
from dosing.protocol.build_inputs import InputsBuilder
from dosing.protocol.build_states import StateBuilder
from dosing.protocol.entries import read_document, shape
from dosing.protocol.model import (
    Protocol,
    Reading,
    Source,
    State,
)


def load_protocol(text: str, name: str = "<protocol>") -> Protocol:
    """Read, shape, build and check a protocol file's text. Raises ProtocolError."""
    from dosing.protocol.checks import check_protocol

    data, where = read_document(text, name)
    entry = shape(data, where)
    sha = hashlib.sha256(text.encode()).hexdigest()
    protocol = _Builder(entry, where).build(sha)
    check_protocol(protocol, where.error)
    return protocol


def _reads(states: Mapping[str, State]) -> dict[str, frozenset[str]]:
    reads = {}
    for name, state in states.items():
        names = set().union(*(guards.names_in(t.when) for t in state.transitions))
        for derived, inputs in DERIVED_FROM.items():
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


class _Builder(InputsBuilder, StateBuilder, ChecksBuilder):
    """Builds a Protocol from a shaped file, section by section: each section has a builder of
    its own (inputs, doses, states, checks) sharing one context; this one puts them together."""

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
