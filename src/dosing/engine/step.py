"""The engine: (protocol, patient record, a visit's observations) -> (decision, next record).

Pure: no I/O, no printing, no clock. A lab older than its maximum age is not used; when a
rule that could fire needs it, the decision is `refer` and says what to measure, never a
dose from old data. A rule may declare that its missing data means "not yet" (`waits`): when
only such rules are undecided, the state's stay applies (the current dose continues) and the
decision names what to measure or assess, and by when.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from fractions import Fraction

import attrs

from dosing.core.derived import bsa_mosteller, crcl_cockcroft_gault
from dosing.core.errors import EngineError
from dosing.core.units import conversion, format_number
from dosing.core.vocabulary import VOCABULARY, Quantitative
from dosing.engine.decision import Decision, DoseLine, RuleRef, daily_amount
from dosing.engine.explain import describe, nearest, not_met
from dosing.engine.observations import Observation
from dosing.engine.patient import PatientRecord
from dosing.protocol.guards import Finding, Outcome, Value, evaluate
from dosing.protocol.model import Action, DoseSpec, Effect, Protocol, State, Transition

STOPS: frozenset[str] = frozenset({"hold", "discontinue", "ineligible"})
"""Actions that give no dose: one that is certainly due is stated even when a rule above it
cannot be decided, so a hold is never skipped (nor left unrecorded) for missing data."""
_NO_DOSE: frozenset[str] = STOPS | {"refer"}

OVER_MAXIMUM = "would exceed the protocol maximum"
"""In the warning of a decision whose rule asked for more than limits.max_daily_dose."""


@attrs.frozen
class _Facts:
    """What the engine knows at a visit: values by name, and why any are absent."""

    values: dict[str, Value | None]
    absent: dict[str, str]
    entered: dict[str, str]
    defaults_used: frozenset[str]
    derivations: dict[str, str]
    """How each derived value was computed, for the reasons."""
    carried: dict[str, str] = attrs.Factory(dict)
    """Assessments recorded at an earlier visit and used here, each with what to say."""
    unusable: dict[str, Value] = attrs.Factory(dict)
    """Labs present but not usable (too old, before the dose, before steady state): what
    they were. Never dosed on; a rule they would make fire does not wait ("not yet")."""
    waited: dict[str, int] = attrs.Factory(dict)
    """Days since each input was last observed, usable or not (when never: since the current
    dose, else the therapy, started): how long a rule has been waiting for it."""


def step(
    protocol: Protocol,
    record: PatientRecord,
    visit: dt.date,
    observations: Iterable[Observation] = (),
    patient_id: str | None = None,
    explain: bool = True,
) -> tuple[Decision, PatientRecord]:
    """Decide one visit. Returns the decision and the patient's record after it.

    `explain=False` leaves out the per-value reasons (each finding in words): a search over
    thousands of generated visits reads only the action, doses, rules and next check."""
    origin = record.state or protocol.initial
    if origin not in protocol.states:
        raise EngineError(
            f"'{origin}' is not a state of {protocol.id}; states: {', '.join(protocol.states)}"
        )
    observations = tuple(observations)
    _check_dates(record, visit)
    clash = conflicts(observations)
    if clash:
        raise EngineError(conflict_message(clash))
    warnings: list[str] = []
    merged = dict(record.observations)
    for observation in observations:
        if observation.drawn_on > visit:
            raise EngineError(
                f"{observation.name} is dated {observation.drawn_on}, after the visit ({visit})"
            )
        known = merged.get(observation.name)
        if known is None or observation.drawn_on >= known.drawn_on:
            merged[observation.name] = observation
        if observation.name not in protocol.scope:
            warnings.append(f"{observation.name} is not used by {protocol.id}; ignored")
    memory = {name: record.memory.get(name, slot.initial) for name, slot in protocol.memory.items()}
    facts = _gather(protocol, record, visit, merged, memory)
    noted = _remember_once(protocol, memory, facts, protocol.reads.get(origin, frozenset()))
    reads = protocol.reads.get(origin, frozenset())
    noted += [said for name, said in facts.carried.items() if name in reads]
    for name, why in facts.absent.items():
        if name in protocol.labs and name in merged and name in reads:
            warnings.append(why)  # a stale result the rules here would have read
    state = protocol.states[origin]
    choice = _choose(state, facts)
    chosen, outcome = choice.chosen, choice.outcome
    decide = _Decider(
        protocol, record, visit, patient_id, facts, merged, memory, warnings, noted, explain
    )
    if outcome is not None and outcome.truth is None:
        decision, after = decide.cannot_decide(state, outcome, chosen)
    elif chosen is not None and outcome is not None:
        decide.note_undecided(choice.undecided, chosen)
        decision, after = decide.fire(state, chosen, outcome, choice.passed)
    elif choice.waiting:
        decision, after = decide.wait(state, choice.waiting, choice.considered)
    else:
        decision, after = decide.stay(state, choice.considered)
    if decision.action == "refer":
        return decision, after  # nothing was acted on: the band the last visit acted in stays
    return decision, _tracked(protocol, facts, after)


def _check_dates(record: PatientRecord, visit: dt.date) -> None:
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
    _check_dates(record, visit)
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


def _tracked(protocol: Protocol, facts: _Facts, record: PatientRecord) -> PatientRecord:
    """The record with each 'track' count set to what this visit showed (kept if unknown).
    Not after a referral: a reduction on a fall into a band must still come at the next
    visit the protocol decides, or a count that fell while the visit was referred would
    never be acted on."""
    tracked = {}
    for name, slot in protocol.memory.items():
        if slot.track is not None:
            truth = evaluate(slot.track, facts.values).truth
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
    facts = _gather(protocol, record, visit, merged, memory)
    _remember_once(protocol, memory, facts)
    choice = _choose(protocol.states[record.state or protocol.initial], facts)
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


def _gather(
    protocol: Protocol,
    record: PatientRecord,
    visit: dt.date,
    merged: Mapping[str, Observation],
    memory: Mapping[str, Fraction | str],
) -> _Facts:
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
    derivations = _derive(protocol, values, absent, merged)
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
    return _Facts(
        values, absent, entered, frozenset(defaults), derivations, carried, unusable, last_seen
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
    return _gather(protocol, record, visit, merged, memory).values


def _remember_once(
    protocol: Protocol,
    memory: dict[str, Fraction | str],
    facts: _Facts,
    read_here: frozenset[str] = frozenset(),
) -> list[str]:
    """Set each 'once' count whose guard holds at this visit, before any rule reads it, so
    that a source's 'never' covers every visit (holds and referrals too). Returns the
    reasons to state, one per count set now that this state's rules read."""
    noted = []
    for name, slot in protocol.memory.items():
        if slot.once is None or memory[name] != 0:
            continue
        outcome = evaluate(slot.once, facts.values)
        if outcome.truth is True:
            memory[name] = Fraction(1)
            facts.values[name] = Fraction(1)
            if name not in read_here:
                continue  # set all the same; said where it matters
            noted.append(f"Noted from this visit on: {slot.once_text} ({name.replace('_', ' ')})")
    return noted


def _twin_present(name: str, facts: _Facts) -> bool:
    entry = VOCABULARY.get(name)
    measure = entry.measure if entry is not None else None
    twin = measure.twin if isinstance(measure, Quantitative) else None
    return twin is not None and facts.values.get(twin) is not None


def _derive(
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


_STATED_ALL_THE_SAME = {
    "hold": "the hold is stated all the same",
    "discontinue": "the stop is stated all the same",
    "ineligible": "the exclusion is stated all the same",
    "refer": "the referral is stated all the same",
}

_MEANWHILE = {"continue": "the current dose continues", "hold": "the hold continues"}
"""What a waiting decision means, by the state's stay."""


@attrs.frozen
class _Choice:
    chosen: Transition | None
    outcome: Outcome | None
    considered: list[Outcome]
    undecided: list[tuple[Transition, Outcome]]
    """Rules above the chosen no-dose rule that could not be decided (their data missing)."""
    waiting: list[tuple[Transition, Outcome]] = attrs.Factory(list)
    """With nothing chosen: the rules that wait for missing data, and nothing else blocks."""
    passed: list[tuple[Transition, Outcome]] = attrs.Factory(list)
    """Rules of a higher priority than the chosen one, each decided not to apply."""


def _waits(transition: Transition, outcome: Outcome, facts: _Facts) -> bool:
    """Undecided while something the rule declared it waits for is absent ("not yet"): the
    declaration says the rule has nothing to act on without it, whatever else it lacks (a
    trough's timing, when no trough was drawn)."""
    wait = transition.waits
    if wait is None or outcome.truth is not None:
        return False
    missing = [name for name in wait.data if facts.values.get(name) is None]
    if not missing:
        return False
    if wait.at_most_days is not None and any(
        facts.waited.get(name, 0) > wait.at_most_days for name in missing
    ):
        return False  # waited too long: the clinician decides
    # A last value present but not usable (too old, drawn before the dose or before steady
    # state) that would make the rule fire is not "nothing yet": a trough of 40 ng/mL drawn
    # too early is the clinician's, not a reason to continue.
    known = {**facts.values, **facts.unusable}
    return evaluate(transition.when, known).truth is not True


def _awaited(transition: Transition, outcome: Outcome, facts: _Facts) -> frozenset[str]:
    """What a waiting rule still needs: its missing declared data, and what its guard lacked."""
    assert transition.waits is not None
    declared = {name for name in transition.waits.data if facts.values.get(name) is None}
    return frozenset(declared | outcome.missing)


def _choose(state: State, facts: _Facts) -> _Choice:
    """The transition that fires, highest priority first; or what blocks a decision.

    A rule that cannot be decided blocks the rules below it, except that a rule giving no
    dose (hold, stop, exclusion) which certainly applies is taken when every undecided rule
    above it would also give no dose (or refer): the patient is held either way, and the
    hold is recorded. A rule that waits for missing data ("not yet") does not apply at this
    visit: a hold, stop or exclusion below it is taken, and so is a referral when nothing
    else is undecided; a dose below it is not given (the data decides between them); when
    nothing else applies, the state's stay does, until the data is there."""
    considered: list[Outcome] = []
    passed: list[tuple[Transition, Outcome]] = []
    blocked: list[tuple[Transition, Outcome]] = []
    waiting: list[tuple[Transition, Outcome]] = []
    for priority in sorted({t.priority for t in state.transitions}, reverse=True):
        group = [
            (t, evaluate(t.when, facts.values)) for t in state.transitions if t.priority == priority
        ]
        fired = [(t, o) for t, o in group if o.truth is True]
        if len(fired) > 1:
            rules = " and ".join(f"'{t.rule}'" for t, _ in fired)
            raise EngineError(f"rules {rules} both apply at equal priority {priority}")
        if fired:
            rule, outcome = fired[0]
            if not blocked and not waiting:
                return _Choice(rule, outcome, considered, [], passed=passed)
            if rule.action in STOPS or (rule.action == "refer" and not blocked):
                return _Choice(rule, outcome, considered, [*blocked, *waiting], passed=passed)
            break  # a dose below an undecided or waiting rule: not given
        unknown = [(t, o) for t, o in group if o.truth is None]
        undecided = [(t, o) for t, o in unknown if not _waits(t, o, facts)]
        blocked += undecided
        waiting += [(t, o) for t, o in unknown if _waits(t, o, facts)]
        if any(t.action not in _NO_DOSE for t, _ in undecided):
            break  # an undecided rule that could give a dose: nothing below may be taken
        if not unknown:
            considered.extend(o for _, o in group)
            passed.extend(group)
    else:
        if waiting and not blocked:
            return _Choice(None, None, considered, [], waiting)
    first = blocked or waiting
    if first:
        return _Choice(first[0][0], first[0][1], considered, [])
    return _Choice(None, None, considered, [])


@attrs.define
class _Decider:
    protocol: Protocol
    record: PatientRecord
    visit: dt.date
    patient_id: str | None
    facts: _Facts
    merged: dict[str, Observation]
    memory: dict[str, Fraction | str]
    warnings: list[str]
    noted: list[str] = attrs.Factory(list)
    """Reasons for 'once' counts set at this visit."""
    explaining: bool = True

    def label(self, name: str) -> str:
        kind = self.protocol.scope.get(name)
        return kind.label if kind is not None else name

    def explain(self, findings: Iterable[Finding]) -> list[str]:
        texts: list[str] = []
        if not self.explaining:
            return texts
        for finding in findings:
            text = describe(
                finding, self.protocol.scope, self.facts.entered, self.facts.defaults_used
            )
            derivation = self.facts.derivations.get(getattr(finding.atom, "subject", ""))
            if derivation:
                text = f"{text} [{derivation}]"
            if text not in texts:
                texts.append(text)
        return texts

    def decision(
        self,
        state: str,
        action: Action,
        doses: tuple[DoseLine, ...],
        next_check: dt.date | None,
        rules: tuple[RuleRef, ...],
        reasons: list[str],
    ) -> Decision:
        return Decision(
            patient_id=self.patient_id,
            date=self.visit,
            protocol=self.protocol.id,
            protocol_version=self.protocol.version,
            protocol_sha256=self.protocol.sha256,
            state=state,
            action=action,
            doses=doses,
            next_check=next_check,
            rules=rules,
            reasons=(*reasons, *self.noted),
            warnings=tuple(dict.fromkeys(self.warnings)),  # each warning once
        )

    def refer(
        self, rules: tuple[RuleRef, ...], reasons: list[str]
    ) -> tuple[Decision, PatientRecord]:
        """No dose: the clinician decides, and the patient stays where they were."""
        record = self.unchanged()
        assert record.state is not None
        return self.decision(record.state, "refer", (), None, rules, reasons), record

    def unchanged(self) -> PatientRecord:
        """The record as it was, with this visit's observations and 'once' counts."""
        return attrs.evolve(
            self.record,
            state=self.record.state or self.protocol.initial,
            memory=self.memory,
            observations=self.merged,
        )

    def cannot_decide(
        self, state: State, outcome: Outcome, transition: Transition | None
    ) -> tuple[Decision, PatientRecord]:
        # Ask for everything the state's rules read and lack, so one new draw settles it.
        reads = self.protocol.reads.get(state.name, frozenset())
        lacking = set(outcome.missing) | {name for name in reads if name in self.facts.absent}
        # An analyte measured in one of its two measures is not lacking in the other.
        lacking -= {name for name in lacking if _twin_present(name, self.facts)}
        for name in sorted(lacking):
            said = self.facts.absent.get(name, f"{name} is not known")
            if said not in self.warnings:  # one analyte in two measures is asked for once
                self.warnings.append(said)
        labels = ", ".join(sorted({self.label(name) for name in lacking}))
        rule = f"'{transition.rule}' " if transition else ""
        blocking = ", ".join(sorted({self.label(name) for name in outcome.missing}))
        reasons = [
            f"Cannot decide in state {state.name}: rule {rule}needs {blocking}; no dose is "
            f"recommended from missing or stale data (needed here: {labels})",
            *self.explain(outcome.findings),
        ]
        return self.refer((), reasons)

    def note_undecided(
        self, undecided: list[tuple[Transition, Outcome]], chosen: Transition
    ) -> None:
        """Say which rules above a stated hold, stop or exclusion could not be decided, and
        what they lack."""
        if not undecided:
            return
        missing = sorted({name for _, outcome in undecided for name in outcome.missing})
        lacking = ", ".join(sorted({self.label(name) for name in missing}))
        rules = ", ".join(f"'{transition.rule}'" for transition, _ in undecided)
        self.warnings.append(
            f"{'rules' if len(undecided) > 1 else 'rule'} {rules} could not be decided "
            f"(needs {lacking}); {_STATED_ALL_THE_SAME[chosen.action]}: {lacking} still to "
            "be measured or assessed before any dose"
        )
        for name in missing:
            said = self.facts.absent.get(name)
            if said is not None and said not in self.warnings:
                self.warnings.append(said)

    def fire(
        self,
        state: State,
        transition: Transition,
        outcome: Outcome,
        passed: list[tuple[Transition, Outcome]] = [],  # noqa: B006 - read only
    ) -> tuple[Decision, PatientRecord]:
        target = self.protocol.states[transition.target]
        reasons = [transition.message, *self.explain(outcome.findings)]
        if passed and self.explaining:
            above = [rule.rule for rule, _ in passed]
            findings = [found for _, checked in passed for found in checked.findings]
            line = not_met(above, findings, outcome.findings, self.protocol.scope, self.memory)
            if line is not None:
                reasons.append(line)
        rules = (RuleRef(transition.rule, transition.source),)
        memory = self.remember(state, transition, reasons)
        if memory is None:
            return self.refer(rules, reasons)
        started = self.record.therapy_started_on
        if transition.action == "start" and started is None:
            started = self.visit
        moved = target.name != state.name
        changed = transition.action in ("start", "increase", "decrease", "resume")
        record = PatientRecord(
            state=target.name,
            state_since=self.visit if moved else (self.record.state_since or self.visit),
            therapy_started_on=started,
            dose_since=self.visit if changed else self.record.dose_since,
            memory=memory,
            observations=self.merged,
        )
        return self.conclude(target, transition.action, rules, reasons, record)

    def remember(
        self, state: State, transition: Transition, reasons: list[str]
    ) -> dict[str, Fraction | str] | None:
        """Memory after the transition's effects, each computed from the memory before it;
        None (with a warning) when a dose cannot move as the rule says."""
        before = self.memory
        after = dict(before)
        for effect in transition.effects:
            current = before[effect.name]
            if effect.kind == "scale":
                assert isinstance(current, Fraction)
                scaled = self.scale(effect, current, reasons)
                if scaled is None:
                    return None
                after[effect.name] = scaled
            elif effect.kind == "state":
                after[effect.name] = state.name
            elif effect.kind == "copy":
                assert isinstance(effect.value, str)
                after[effect.name] = before[effect.value]
            elif effect.kind in ("up", "down"):
                step = 1 if effect.kind == "up" else -1
                index = effect.levels.index(current) + step if current in effect.levels else -1
                if not 0 <= index < len(effect.levels):
                    levels = ", ".join(format_number(v) for v in effect.levels)
                    self.warnings.append(
                        f"{effect.name} cannot go {effect.kind} from {current} mg on its ladder "
                        f"({levels} mg); the clinician decides"
                    )
                    return None
                after[effect.name] = effect.levels[index]
            elif effect.kind == "add":
                assert isinstance(current, Fraction)
                assert isinstance(effect.value, Fraction)
                after[effect.name] = current + effect.value
            elif effect.value is not None:
                after[effect.name] = effect.value
        return after

    def stay(self, state: State, considered: list[Outcome]) -> tuple[Decision, PatientRecord]:
        findings = [f for outcome in considered for f in outcome.findings]
        if state.stay is None:
            reasons = [
                f"No rule applies in state {state.name}: the clinician decides",
                *self.explain(findings),
            ]
            return self.refer((), reasons)
        reasons = [f"No rule fired in state {state.name}", *self.explain(nearest(findings))]
        return self.stay_as_before(state, state.stay, reasons)

    def stay_as_before(
        self, state: State, stay: Action, reasons: list[str]
    ) -> tuple[Decision, PatientRecord]:
        """The state's stay: the patient stays in the state, memory and labs kept."""
        record = attrs.evolve(
            self.record,
            state=state.name,
            state_since=self.record.state_since or self.visit,
            memory=self.memory,
            observations=self.merged,
        )
        rules = (RuleRef(f"{state.name}:{stay}", state.source),)
        return self.conclude(state, stay, rules, reasons, record)

    def wait(
        self,
        state: State,
        waiting: list[tuple[Transition, Outcome]],
        considered: list[Outcome],
    ) -> tuple[Decision, PatientRecord]:
        """Only rules that wait for missing data could not be decided: not yet. The state's
        stay applies, and the decision names what to measure or assess, and by when."""
        assert state.stay is not None  # waiting is allowed only where staying means something
        lacking = set().union(*(_awaited(t, o, self.facts) for t, o in waiting))
        lacking -= {name for name in lacking if _twin_present(name, self.facts)}
        for name in sorted(lacking):
            said = self.facts.absent.get(name, f"{name} is not known")
            if said not in self.warnings:
                self.warnings.append(said)
        labels = ", ".join(sorted({self.label(name) for name in lacking}))
        many = len(waiting) > 1
        rules = ", ".join(f"'{transition.rule}'" for transition, _ in waiting)
        meanwhile = _MEANWHILE.get(state.stay, f"{state.stay} as before")
        reasons = [
            f"Not yet: {'rules' if many else 'rule'} {rules} {'wait' if many else 'waits'} "
            f"for {labels}; {meanwhile} until then"
        ]
        whys = dict.fromkeys(
            (t.waits.because, t.waits.source) for t, _ in waiting if t.waits is not None
        )
        reasons += [f"Not yet, because {because} ({source})" for because, source in whys]
        reasons += self.explain(nearest(f for outcome in considered for f in outcome.findings))
        decision, record = self.stay_as_before(state, state.stay, reasons)
        if decision.action == "refer":
            return decision, record  # no dose can be given as the state says
        next_check = decision.next_check
        rechecks = [t.waits.recheck_days for t, _ in waiting if t.waits and t.waits.recheck_days]
        if rechecks:
            soonest = self.visit + dt.timedelta(days=math.ceil(min(rechecks)))
            next_check = soonest if next_check is None else min(next_check, soonest)
        by = f" by the next check ({next_check})" if next_check else ""
        return attrs.evolve(
            decision,
            next_check=next_check,
            warnings=(*decision.warnings, f"Still to measure or assess{by}: {labels}"),
            awaiting=tuple(sorted(lacking)),
        ), record

    def scale(self, effect: Effect, current: Fraction, reasons: list[str]) -> Fraction | None:
        """dose x target / measured, capped per step, rounded to the dose's step."""
        slot = self.protocol.memory[effect.name]
        assert slot.step is not None
        assert slot.max_change is not None
        assert effect.target is not None
        assert isinstance(effect.value, str)
        measured = self.facts.values.get(effect.value)
        if not isinstance(measured, Fraction) or measured <= 0:
            self.warnings.append(f"{effect.value} is needed to adjust {effect.name}")
            return None
        raw = current * effect.target / measured
        low, high = current * (1 - slot.max_change), current * (1 + slot.max_change)
        capped = min(max(raw, low), high)
        steps = capped / slot.step
        whole = math.floor(steps)
        toward_current = capped > current  # a tie rounds toward the current dose
        if steps - whole > Fraction(1, 2) or (
            steps - whole == Fraction(1, 2) and not toward_current
        ):
            whole += 1
        amount = whole * slot.step
        if amount > high:
            amount -= slot.step
        elif amount < low:
            amount += slot.step
        unit = self.protocol.labs[effect.value].unit
        cap = ""
        if capped != raw:
            share = format_number(slot.max_change * 100)
            cap = f"; capped at a {share}% change = {format_number(capped, 3)} mg"
        reasons.append(
            f"{effect.name.replace('_', ' ')} {format_number(current)} mg x target "
            f"{format_number(effect.target)} {unit} / measured {format_number(measured, 3)} {unit} "
            f"= {format_number(raw, 3)} mg{cap}; rounded to a multiple of "
            f"{format_number(slot.step)} mg: {format_number(amount)} mg"
        )
        if amount <= 0 or amount == current:
            self.warnings.append(
                f"no {format_number(slot.step)} mg step changes {effect.name.replace('_', ' ')} "
                f"from {format_number(current)} mg within the cap; the clinician decides"
            )
            return None
        return amount

    def conclude(
        self,
        target: State,
        action: Action,
        rules: tuple[RuleRef, ...],
        reasons: list[str],
        record: PatientRecord,
    ) -> tuple[Decision, PatientRecord]:
        doses: tuple[DoseLine, ...] = ()
        if action not in _NO_DOSE:
            lines = [self.dose(spec, reasons, record.memory) for spec in target.doses]
            doses = tuple(line for line in lines if line is not None)
            if len(doses) < len(lines) or not self.within_limit(doses):
                return self.refer(rules, reasons)  # no dose can be given as the rule says
        # Final states have no monitoring; a stop that is not final (off drug) keeps its own.
        next_check = None if action == "refer" else self.next_check(target, record, reasons)
        return self.decision(target.name, action, doses, next_check, rules, reasons), record

    def dose(
        self, spec: DoseSpec, reasons: list[str], memory: Mapping[str, Fraction | str]
    ) -> DoseLine | None:
        if spec.amount is not None:
            return DoseLine(spec.drug, spec.amount, spec.unit, spec.frequency)
        if spec.level_from is not None:
            level = memory[spec.level_from]
            assert isinstance(level, Fraction)
            return DoseLine(spec.drug, level, spec.unit, spec.frequency)
        assert spec.per_m2 is not None
        bsa = self.facts.values.get("bsa")
        if not isinstance(bsa, Fraction):
            self.warnings.append(
                f"{spec.drug} is dosed per m²: {self.facts.absent.get('bsa', 'BSA unknown')}"
            )
            return None
        raw = spec.per_m2 * bsa
        amount, how = raw, ""
        if spec.round_to is not None:
            steps = raw / spec.round_to
            whole = math.floor(steps)
            if spec.rounding == "nearest" and steps - whole > Fraction(1, 2):
                whole += 1
            amount = whole * spec.round_to
            nearest = spec.rounding == "nearest"
            mode = "to the nearest" if nearest else "down to a multiple of"
            tie = " (a tie rounds down)" if nearest else ""
            step = format_number(spec.round_to)
            how = f"; rounded {mode} {step} mg{tie}: {format_number(amount)} mg"
        reasons.append(
            f"{spec.drug} {format_number(spec.per_m2)} mg/m² x BSA {format_number(bsa, 3)} m² "
            f"(Mosteller) = {format_number(raw, 1)} mg{how}"
        )
        if spec.tolerance is not None and abs(amount - raw) > spec.tolerance * raw:
            share = format_number(abs(amount - raw) / raw * 100, 0)
            allowed = format_number(spec.tolerance * 100)
            self.warnings.append(
                f"{spec.drug}: the rounded dose, {format_number(amount)} mg, is {share}% from the "
                f"calculated {format_number(raw, 1)} mg (at most {allowed}%); a finer "
                "formulation or the clinician decides"
            )
            return None
        if spec.ceiling is not None and amount > spec.ceiling:
            named = f" ({spec.ceiling_name})" if spec.ceiling_name else ""
            self.warnings.append(
                f"{spec.drug} {format_number(amount)} mg is above the ceiling of "
                f"{format_number(spec.ceiling)} mg per dose{named}; the clinician decides"
            )
            return None
        if amount <= 0:
            self.warnings.append(f"{spec.drug}: the rounded dose is 0 mg; the clinician decides")
            return None
        return DoseLine(spec.drug, amount, spec.unit, spec.frequency)

    def within_limit(self, doses: tuple[DoseLine, ...]) -> bool:
        limit = self.protocol.max_daily_dose
        daily = daily_amount(doses, self.protocol.drug)
        if limit is not None and daily > limit:
            self.warnings.append(
                f"{format_number(daily)} mg/day {OVER_MAXIMUM} of "
                f"{format_number(limit)} mg/day; the clinician decides"
            )
            return False
        return True

    def next_check(
        self, target: State, record: PatientRecord, reasons: list[str]
    ) -> dt.date | None:
        values = dict(self.facts.values)
        started = record.therapy_started_on
        values["days_on_therapy"] = Fraction((self.visit - started).days) if started else None
        values["days_in_state"] = Fraction((self.visit - (record.state_since or self.visit)).days)
        dosed = record.dose_since
        values["days_at_dose"] = Fraction((self.visit - dosed).days) if dosed else None
        values.update(record.memory)
        values.update(self.protocol.constants)
        for monitoring in target.monitoring:
            # An unknown condition counts as met: the more frequent check wins.
            if monitoring.when is None or evaluate(monitoring.when, values).truth is not False:
                if monitoring.note:
                    reasons.append(monitoring.note)
                # A duration is exact (a month is a Julian year / 12 = 30.4375 days, as in
                # the guards); the check falls on the first whole day it has fully elapsed, so
                # a patient seen on that date meets a guard written with the same duration.
                days = math.ceil(monitoring.every_days)
                try:
                    return self.visit + dt.timedelta(days=days)
                except OverflowError:
                    raise EngineError(
                        f"the next check, {days} days after {self.visit}, would fall after "
                        f"{dt.date.max}, the last date dosing can count to; is {self.visit} a "
                        "placeholder date?"
                    ) from None
        return None
