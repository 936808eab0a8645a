"""Reading what a person typed ('anc=1200/mm3', 'bleeding=no') into exact observations."""

from __future__ import annotations

import datetime as dt
import re
from fractions import Fraction

import attrs

from dosing.core.characters import shown
from dosing.core.derived import age_on
from dosing.core.errors import ObservationError, UnitError
from dosing.core.units import Conversion, accepted_spellings, conversion, format_number, split_value
from dosing.core.vocabulary import Categorical, Observable, Quantitative, category_value, observable
from dosing.protocol.model import Protocol, Reading


@attrs.frozen
class Observation:
    """One observed value, canonical and exact, with what was typed and when it was drawn."""

    name: str
    value: Fraction | str
    entered: str
    drawn_on: dt.date


def age_observation(birth: dt.date, date: dt.date) -> Observation:
    """The age on a date from the birth date, exact (`age_on`), as the prompt and a replayed
    birth_date give it."""
    years = age_on(birth, date)
    return Observation("age", years, f"{format_number(years, 2)} years, born {birth}", date)


def age_since(then: Observation, date: dt.date) -> Observation:
    """An age recorded on an earlier day (`then.drawn_on`), counted on to `date` as the
    prompt counts an imported age: a year is 365.25 days."""
    assert isinstance(then.value, Fraction)
    years = then.value + Fraction((date - then.drawn_on).days * 4, 1461)
    return Observation("age", years, f"{format_number(years, 2)} years", date)


def read_memory(protocol: Protocol, name: str, text: str) -> Fraction | str:
    """A remembered value typed by a person: a count, a state, or a ladder level in mg."""
    slot = protocol.memory.get(name)
    if slot is None:
        known = ", ".join(protocol.memory) or "nothing"
        raise ObservationError(f"memory {name}: {protocol.id} remembers {known}")
    text = text.strip()
    if slot.kind == "count":
        if not re.fullmatch("[0-9]{1,9}", text):
            raise ObservationError(f"memory {name}={shown(text)}: expected a whole number")
        return Fraction(int(text))
    if slot.kind == "state":
        if text != "none" and text not in protocol.states:
            states = ", ".join(protocol.states)
            raise ObservationError(f"memory {name}={text}: expected a state ({states}) or none")
        return text
    if slot.ladder is not None:
        levels = protocol.ladders[slot.ladder].levels
        allowed = "one of " + ", ".join(f"{format_number(level)} mg" for level in levels)
    else:
        assert slot.step is not None
        allowed = f"a multiple of {format_number(slot.step)} mg"
    try:
        number, unit = split_value(text)
        amount = conversion(unit or "?", "mg", name).apply(number)
    except UnitError:
        raise ObservationError(f"memory {name}={text}: expected a dose in mg, {allowed}") from None
    on_ladder = slot.ladder is None or amount in protocol.ladders[slot.ladder].levels
    on_step = slot.step is None or (amount > 0 and (amount / slot.step).denominator == 1)
    if not (on_ladder and on_step):
        raise ObservationError(f"memory {name}={text}: expected {allowed}")
    return amount


def reading_for(protocol: Protocol | None, entry: Observable) -> Reading:
    """How `entry` is read: the protocol's compiled reading, or one built from the vocabulary."""
    if protocol is not None and entry.name in protocol.readings:
        return protocol.readings[entry.name]
    measure = entry.measure
    assert not isinstance(measure, Categorical)
    return Reading(
        entry.name,
        measure.canonical,
        measure.low,
        measure.high,
        measure.molar_mass,
        measure.bare_unit,
        smallest=measure.smallest,
    )


def read_observation(
    protocol: Protocol | None,
    name: str,
    text: str,
    drawn_on: dt.date,
    accept_implausible: bool = False,
) -> Observation:
    """Parse one observation. Raises ObservationError naming the value and what is accepted."""
    return ObservationReader(protocol, accept_implausible).read(name, text, drawn_on)


_Resolved = tuple[Observable, Reading | None]


class ObservationReader:
    """Reads many observations for one protocol, resolving each name and unit once.

    A replay reads millions of values in a handful of spellings; the vocabulary entry, the
    reading and the unit conversion are looked up once per (name, unit) and reused.
    """

    def __init__(self, protocol: Protocol | None, accept_implausible: bool = False) -> None:
        self.protocol = protocol
        self.accept_implausible = accept_implausible
        self._names: dict[str, _Resolved] = {}
        self._units: dict[tuple[str, str], Conversion] = {}

    def _resolve(self, name: str) -> _Resolved:
        resolved = self._names.get(name)
        if resolved is None:
            entry = observable(name)
            reading = (
                None
                if isinstance(entry.measure, Categorical)
                else reading_for(self.protocol, entry)
            )
            resolved = self._names[name] = (entry, reading)
        return resolved

    def _twin(self, entry: Observable, spelled: str) -> str | None:
        """The twin measure of the analyte when the unit is one of the twin's."""
        measure = entry.measure
        if not isinstance(measure, Quantitative) or measure.twin is None:
            return None
        _, reading = self._resolve(measure.twin)
        assert reading is not None
        if spelled in reading.spellings:
            return measure.twin
        try:
            conversion(spelled, reading.unit, measure.twin, reading.molar_mass)
        except UnitError:
            return None
        return measure.twin

    def read(self, name: str, text: str, drawn_on: dt.date) -> Observation:
        """One observation; raises ObservationError naming the value and what is accepted."""
        entry, reading = self._resolve(name)
        text = str(text).strip()
        if reading is None:
            return Observation(entry.name, category_value(entry, text), text, drawn_on)

        def accepted() -> str:  # only on the error path
            known = reading.spellings or accepted_spellings(reading.unit, reading.molar_mass)
            return ", ".join(known)

        try:
            number, spelled = split_value(text)
        except UnitError as error:
            raise ObservationError(
                f"{entry.name}={shown(text)}: {error}; expected a number and a unit ({accepted()})"
            ) from None
        if not spelled:
            if reading.bare_unit is None:
                raise ObservationError(
                    f"{entry.name}={text}: a number needs its unit; accepted: {accepted()}"
                )
            spelled = reading.bare_unit
        to_unit = self._units.get((entry.name, spelled))
        if to_unit is None:
            to_unit = reading.spellings.get(spelled)
            if to_unit is None:
                try:
                    to_unit = conversion(spelled, reading.unit, entry.name, reading.molar_mass)
                except UnitError as error:
                    twin = self._twin(entry, spelled)
                    if twin is not None:
                        return self.read(twin, text, drawn_on)
                    raise ObservationError(
                        f"{entry.name}={text}: {error}; accepted: {accepted()}"
                    ) from None
            self._units[(entry.name, spelled)] = to_unit
        value = to_unit.apply(number)
        if not self.accept_implausible and not reading.plausible(value):
            if reading.low <= value <= reading.high:
                raise ObservationError(
                    f"{entry.name}={text}: {format_number(value, 6)} {reading.unit} is above 0 "
                    f"but below the smallest plausible value, {format_number(reading.smallest)} "
                    f"{reading.unit}; check for a typo, or accept it knowingly "
                    "(--accept-implausible)"
                )
            raise ObservationError(
                f"{entry.name}={text}: {format_number(value)} {reading.unit} is outside the "
                f"plausible range {format_number(reading.low)}-{format_number(reading.high)} "
                f"{reading.unit}; check for a typo, or accept it knowingly (--accept-implausible)"
            )
        return Observation(entry.name, value, text, drawn_on)
