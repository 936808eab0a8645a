"""The context a protocol is built in: the parsed entry, its site parameters and definitions,
and the small readers (quantities, fractions, citations, guards) every section uses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction

from dosing.core.errors import ProtocolError, UnitError
from dosing.core.units import conversion, parse_number, split_value
from dosing.core.vocabulary import VOCABULARY, Categorical
from dosing.protocol import guards
from dosing.protocol.entries import (
    ProtocolEntry,
    Where,
)
from dosing.protocol.guard_binding import bind, compile_guard
from dosing.protocol.guard_parser import CountOf, Syntax, parse_definition
from dosing.protocol.model import (
    LabInput,
    Ladder,
    MemorySlot,
    Parameter,
    Source,
)

DERIVED_FROM = {"crcl": {"age", "weight", "sex", "creatinine"}, "bsa": {"height", "weight"}}


class BuildContext:
    """What every section's builder shares: the file's entry and where its lines are, the site
    parameters, the guard definitions, the ladders and the inputs found so far, and the readers
    of quantities, counts, fractions and citations that every section uses."""

    def __init__(self, entry: ProtocolEntry, where: Where) -> None:
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

    def guard(self, text: str, scope: guards.Scope, path: str) -> guards.Guard:
        try:
            return compile_guard(text, scope, self.definitions)
        except ProtocolError as error:
            raise self.fail(path, str(error)) from None

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

    def _lab_quantity(self, text: str, unit: str, name: str, mm: str | None, path: str) -> Fraction:
        resolved = self.resolve(text)
        try:
            value, spelled = split_value(resolved)
            return conversion(spelled, unit, name, mm).apply(value)
        except UnitError as error:
            raise self.fail(path, f"'{resolved}': {error}") from None
