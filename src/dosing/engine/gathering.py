"""A visit's values, gathered: today's observations merged with those still fresh, the
derived values (BSA, CrCl, age), conflicting results, and what is missing for a decision.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from fractions import Fraction

import attrs

from dosing.core.derived import bsa_mosteller, crcl_cockcroft_gault
from dosing.core.errors import EngineError
from dosing.core.units import conversion, format_number
from dosing.core.vocabulary import VOCABULARY, Quantitative
from dosing.engine.choosing import Facts, choose
from dosing.engine.decision import Decision
from dosing.engine.evaluator import REFERENCE, Evaluator
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord
from dosing.protocol.guards import Value
from dosing.protocol.model import Protocol


def check_dates(record: PatientRecord, visit: dt.date) -> None:
    """A course cannot have started, or be at its dose or state, after the visit it decides."""
    for what, day in (
        ("therapy start", record.therapy_started_on),
        ("state-since", record.state_since),
        ("dose-since", record.dose_since),
    ):
        if day is not None and day > visit:
            raise EngineError(
                f"the {what} date {day} is after the visit ({visit}); a course is decided "
                "only from what happened up to the visit"
            )


def conflicts(observations: Iterable[Observation]) -> list[tuple[Observation, Observation]]:
    """Pairs of observations of one name drawn at one time with different values (the same
    value twice is no conflict)."""
    first: dict[tuple[str, dt.date], Observation] = {}
    found = []
    for observation in observations:
        key = (observation.name, observation.drawn_on)
        known = first.setdefault(key, observation)
        if known.value != observation.value:
            found.append((known, observation))
    return found


def conflict_message(clash: Iterable[tuple[Observation, Observation]]) -> str:
    """Names each conflicting pair: '... anc drawn 2026-01-05 was given as 1.2x10^9/L and as
    1.5x10^9/L'."""
    pairs = "; ".join(
        f"{a.name} drawn {a.drawn_on} was given as {a.entered} and as {b.entered}" for a, b in clash
    )
    return f"two different values for one draw: {pairs}; give the one that is right"


def refer_conflicting(
    protocol: Protocol,
    record: PatientRecord,
    visit: dt.date,
    observations: Iterable[Observation],
    patient_id: str | None,
    warnings: Iterable[str],
) -> tuple[Decision, PatientRecord]:
    """A visit with two different values for one name at one draw time: `refer`, with no
    dose from either value, nor from an older one. The record keeps the visit's other values
    and none of that name, so the next visit needs it measured again."""
    observations = tuple(observations)
    check_dates(record, visit)
    names = {first.name for first, _ in conflicts(observations)}
    merged = {name: o for name, o in record.observations.items() if name not in names}
    for observation in observations:
        known = merged.get(observation.name)
        if observation.name not in names and (
            known is None or observation.drawn_on >= known.drawn_on
        ):
            merged[observation.name] = observation
    state = record.state or protocol.initial
    if state not in protocol.states:
        raise EngineError(
            f"'{state}' is not a state of {protocol.id}; states: {', '.join(protocol.states)}"
        )
    decision = Decision(
        patient_id=patient_id,
        date=visit,
        protocol=protocol.id,
        protocol_version=protocol.version,
        protocol_sha256=protocol.sha256,
        state=state,
        action="refer",
        doses=(),
        next_check=None,
        rules=(),
        reasons=(
            f"Two different values of {', '.join(sorted(names))} for one draw: no dose is "
            "recommended from either; the clinician decides which is right",
        ),
        warnings=tuple(warnings),
    )
    return decision, attrs.evolve(record, state=state, observations=merged)


def with_tracked(protocol: Protocol, facts: Facts, record: PatientRecord) -> PatientRecord:
    """The record with each 'track' count set to what this visit showed (kept if unknown).
    Not after a referral: a reduction on a fall into a band must still come at the next
    visit the protocol decides, or a count that fell while the visit was referred would
    never be acted on."""
    tracked = {}
    for name, slot in protocol.memory.items():
        if slot.track is not None:
            truth = facts.evaluator.evaluate(slot.track, facts.values).truth
            if truth is not None:
                tracked[name] = Fraction(1 if truth else 0)
    if not tracked:
        return record
    return attrs.evolve(record, memory={**record.memory, **tracked})


def missing_for_decision(
    protocol: Protocol,
    record: PatientRecord,
    visit: dt.date,
    observations: Iterable[Observation] = (),
) -> frozenset[str]:
    """The names whose absence keeps this visit from being decided (empty when it can be).

    The prompt uses it to ask for an assessment only when the decision depends on it.
    """
    merged = dict(record.observations)
    for observation in observations:
        merged[observation.name] = observation
    memory = {name: record.memory.get(name, slot.initial) for name, slot in protocol.memory.items()}
    facts = gather(protocol, record, visit, merged, memory)
    remember_once(protocol, memory, facts)
    choice = choose(protocol.states[record.state or protocol.initial], facts)
    if choice.outcome is not None and choice.outcome.truth is None:
        return choice.outcome.missing
    if choice.chosen is None and choice.waiting:
        # Decided ("not yet"), but what the waiting rules wait for is worth asking for.
        return frozenset(
            name
            for transition, _ in choice.waiting
            if transition.waits is not None
            for name in transition.waits.data
            if facts.values.get(name) is None
        )
    return frozenset()


def gather(
    protocol: Protocol,
    record: PatientRecord,
    visit: dt.date,
    merged: Mapping[str, Observation],
    memory: Mapping[str, Fraction | str],
    evaluator: Evaluator = REFERENCE,
) -> Facts:
    values: dict[str, Value | None] = {}
    absent: dict[str, str] = {}
    carried: dict[str, str] = {}
    unusable: dict[str, Value] = {}
    defaults: set[str] = set()
    for name, lab in protocol.labs.items():
        uln = f"{name}_uln"
        if uln in protocol.scope:
            given = merged.get(uln)
            if given is not None:
                values[uln] = given.value
            elif lab.uln_default is not None:
                values[uln] = lab.uln_default
                defaults.add(uln)
            else:
                absent[uln] = f"{lab.label} ULN was not given and the protocol has no default"
        observation = merged.get(name)
        if observation is None:
            absent[name] = f"{lab.label} was not given: measure {lab.label}"
            continue
        age = (visit - observation.drawn_on).days
        dosed = record.dose_since
        if lab.after_dose_change and dosed is not None and observation.drawn_on <= dosed:
            absent[name] = (
                f"{lab.label} from {observation.drawn_on} was drawn before the current dose "
                f"started ({dosed}): not used; draw a new {lab.label}"
            )
            unusable[name] = observation.value
            continue
        waited = (observation.drawn_on - dosed).days if dosed is not None else None
        if lab.steady_after_days and waited is not None and waited < lab.steady_after_days:
            absent[name] = (
                f"{lab.label} from {observation.drawn_on} was drawn {waited} days after the "
                f"dose changed ({dosed}), before steady state ({lab.steady_after_days} days): "
                f"not used; draw a {lab.label} from "
                f"{observation.drawn_on - dt.timedelta(waited - lab.steady_after_days)}"
            )
            unusable[name] = observation.value
            continue
        if age > lab.max_age_days:
            absent[name] = (
                f"{lab.label} from {observation.drawn_on} is {age} days old (at most "
                f"{lab.max_age_days} days): not used; measure {lab.label} again"
            )
            unusable[name] = observation.value
            continue
        values[name] = observation.value
    for name in (*protocol.facts, *protocol.assessments):
        observation = merged.get(name)
        recorded_now = observation is not None and observation.drawn_on == visit
        if name in protocol.if_not_recorded and not recorded_now:
            values[name] = protocol.if_not_recorded[name]
            defaults.add(name)
        elif observation is None:
            absent[name] = f"{name} was not given"
        elif name in protocol.assessments and not recorded_now:
            kept = protocol.carried_forward.get(name)
            age = (visit - observation.drawn_on).days
            if kept is None:
                absent[name] = f"{name} was assessed on {observation.drawn_on}, not at this visit"
            elif age > kept.max_age_days:
                absent[name] = (
                    f"{name} was assessed on {observation.drawn_on}, {age} days ago (carried "
                    f"forward for at most {format_number(kept.max_age_days, 2)} days): not "
                    f"used; assess {name} again"
                )
            else:
                values[name] = observation.value
                carried[name] = (
                    f"{name}: {observation.entered}, as assessed on {observation.drawn_on} "
                    f"({age} days ago; carried forward for at most "
                    f"{format_number(kept.max_age_days, 2)} days, {kept.source})"
                )
        else:
            values[name] = observation.value
    derivations = derive(protocol, values, absent, merged)
    started = record.therapy_started_on
    values["days_on_therapy"] = Fraction((visit - started).days) if started else None
    if started is None:
        absent["days_on_therapy"] = "therapy has not started"
    since = record.state_since
    values["days_in_state"] = Fraction((visit - since).days) if since else Fraction(0)
    dosed = record.dose_since
    values["days_at_dose"] = Fraction((visit - dosed).days) if dosed else None
    if dosed is None:
        absent["days_at_dose"] = "the date the current dose was started is not known"
    values.update(memory)
    values.update(protocol.constants)
    entered = {name: observation.entered for name, observation in merged.items()}
    last_seen: dict[str, int] = {}
    for name in (*protocol.labs, *protocol.facts, *protocol.assessments):
        seen = merged.get(name)
        since_when = seen.drawn_on if seen is not None else (record.dose_since or started)
        if since_when is not None:
            last_seen[name] = (visit - since_when).days
    return Facts(
        values,
        absent,
        entered,
        frozenset(defaults),
        derivations,
        carried,
        unusable,
        last_seen,
        evaluator,
    )


def visit_values(
    protocol: Protocol,
    record: PatientRecord,
    visit: dt.date,
    observations: Iterable[Observation] = (),
) -> dict[str, Value | None]:
    """What the engine knows at a visit, by name, before any rule: current labs (a stale or
    missing one is None), facts, assessments, derived values and durations. Checks that watch
    a course (label invariants) read the same values the rules do."""
    merged = dict(record.observations)
    for observation in observations:
        known = merged.get(observation.name)
        if known is None or observation.drawn_on >= known.drawn_on:
            merged[observation.name] = observation
    memory = {name: record.memory.get(name, slot.initial) for name, slot in protocol.memory.items()}
    return gather(protocol, record, visit, merged, memory).values


def remember_once(
    protocol: Protocol,
    memory: dict[str, Fraction | str],
    facts: Facts,
    read_here: frozenset[str] = frozenset(),
) -> list[str]:
    """Set each 'once' count whose guard holds at this visit, before any rule reads it, so
    that a source's 'never' covers every visit (holds and referrals too). Returns the
    reasons to state, one per count set now that this state's rules read."""
    noted = []
    for name, slot in protocol.memory.items():
        if slot.once is None or memory[name] != 0:
            continue
        outcome = facts.evaluator.evaluate(slot.once, facts.values)
        if outcome.truth is True:
            memory[name] = Fraction(1)
            facts.values[name] = Fraction(1)
            if name not in read_here:
                continue  # set all the same; said where it matters
            noted.append(f"Noted from this visit on: {slot.once_text} ({name.replace('_', ' ')})")
    return noted


def twin_present(name: str, facts: Facts) -> bool:
    entry = VOCABULARY.get(name)
    measure = entry.measure if entry is not None else None
    twin = measure.twin if isinstance(measure, Quantitative) else None
    return twin is not None and facts.values.get(twin) is not None


def derive(
    protocol: Protocol,
    values: dict[str, Value | None],
    absent: dict[str, str],
    merged: Mapping[str, Observation],
) -> dict[str, str]:
    derivations: dict[str, str] = {}

    def typed(name: str) -> str:
        observation = merged.get(name)
        return observation.entered if observation else "?"

    height, weight = values.get("height"), values.get("weight")
    if "bsa" in protocol.scope:
        if isinstance(height, Fraction) and isinstance(weight, Fraction):
            values["bsa"] = bsa_mosteller(height, weight)
            derivations["bsa"] = (
                f"Mosteller from height {typed('height')}, weight {typed('weight')}"
            )
        else:
            absent["bsa"] = "BSA needs height and weight"
    if "crcl" in protocol.scope:
        age, sex, creatinine = values.get("age"), values.get("sex"), values.get("creatinine")
        # Which weight Cockcroft-Gault uses is the site's (clinical-facts): the weight the
        # clinician enters for it (ideal or adjusted), else the actual weight; the
        # derivation says which.
        chosen = values.get("crcl_weight")
        basis = "weight for CrCl" if isinstance(chosen, Fraction) else "actual weight"
        shown = typed("crcl_weight") if isinstance(chosen, Fraction) else typed("weight")
        weight = chosen if isinstance(chosen, Fraction) else weight
        if (
            isinstance(age, Fraction)
            and isinstance(weight, Fraction)
            and isinstance(creatinine, Fraction)
            and sex is not None
        ):
            reading = protocol.readings["creatinine"]
            from_mg_dl = reading.spellings.get("mg/dL") or conversion(
                "mg/dL", reading.unit, "creatinine", reading.molar_mass
            )
            values["crcl"] = crcl_cockcroft_gault(
                age, weight, sex == "F", from_mg_dl.invert(creatinine)
            )
            derivations["crcl"] = (
                f"Cockcroft-Gault from age {typed('age')}, {basis} {shown}, sex {sex}, "
                f"creatinine {typed('creatinine')}"
            )
        else:
            absent["crcl"] = "CrCl needs age, weight, sex and a current creatinine"
    return derivations
