"""Building a protocol's doses: the dose ladders, each state's dose (fixed, per m², from a
ladder or a remembered level), and the memory of a dose across states.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

import attrs

from dosing.core.units import format_number
from dosing.protocol import guards
from dosing.protocol.build_context import BuildContext
from dosing.protocol.entries import (
    DoseEntry,
    StartEntry,
)
from dosing.protocol.model import (
    DoseSpec,
    Ladder,
    MemorySlot,
    Protocol,
    Rounding,
    Source,
)


class DoseBuilder(BuildContext):
    """The `ladders:` and `memory:` sections and the `dose:` of each state."""

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

    def level(self, text: str, ladder: Ladder, path: str) -> Fraction:
        amount = self.quantity(text, "mg", path)
        if amount not in ladder.levels:
            levels = ", ".join(f"{format_number(level)} mg" for level in ladder.levels)
            raise self.fail(path, f"'{text}' is not a level of ladder {ladder.name} ({levels})")
        return amount

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
