"""Boundary tests: each threshold tried exactly on, just below and just above, in each
state, through the engine; and scenario coverage (which rules the protocol's scenarios make
fire).
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

from dosing.core.errors import DosingError
from dosing.core.units import format_number
from dosing.engine.observations import Observation, ObservationReader
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.guards import Comparison, comparisons_in
from dosing.protocol.model import Protocol
from dosing.verify.findings import Finding
from dosing.verify.scenarios import SCENARIO_START, run_scenario


def boundary_tests(protocol: Protocol) -> tuple[int, list[Finding]]:
    """Each threshold on an observation, just below/on/above, in every exact spelling."""
    findings: list[Finding] = []
    cases = 0
    reader = ObservationReader(protocol, accept_implausible=True)
    for name, state in protocol.states.items():
        base = _base(protocol, reader)
        seen: set[tuple[str, Fraction]] = set()
        ops: dict[tuple[str, Fraction], set[str]] = {}
        for transition in state.transitions:
            for atom in comparisons_in(transition.when):
                if isinstance(atom, Comparison) and atom.reference is None:
                    ops.setdefault((atom.subject, atom.factor), set()).add(atom.op)
        for transition in state.transitions:
            for atom in comparisons_in(transition.when):
                if not isinstance(atom, Comparison) or atom.reference is not None:
                    continue
                reading = protocol.readings.get(atom.subject)
                if reading is None or (atom.subject, atom.factor) in seen:
                    continue
                seen.add((atom.subject, atom.factor))
                for label, value in _around(atom.factor):
                    if not reading.low <= value <= reading.high:
                        continue
                    outcomes = set()
                    for spelling, conversion in reading.spellings.items():
                        typed = conversion.invert(value)
                        if typed.denominator > 10**12:
                            continue
                        observation = Observation(
                            atom.subject, value, f"{typed} {spelling}", SCENARIO_START
                        )
                        decision = _decide(protocol, name, base, observation)
                        outcomes.add(decision)
                        cases += 1
                    if len(outcomes) > 1:
                        findings.append(
                            Finding(
                                "units disagree",
                                "error",
                                f"states.{name}",
                                f"{atom.subject} {label} {format_number(atom.factor)} {atom.unit} "
                                "gives "
                                f"different decisions in different units: {sorted(outcomes)}",
                            )
                        )
                if len(ops[(atom.subject, atom.factor)]) > 1:
                    continue  # several rules meet at this point: 'on' is theirs to share
                on = _decide(
                    protocol,
                    name,
                    base,
                    Observation(atom.subject, atom.factor, "on", SCENARIO_START),
                )
                holds_on = atom.op in ("<=", ">=", "==")
                side = _nudge(atom, holds_on)
                beside = _decide(
                    protocol, name, base, Observation(atom.subject, side, "beside", SCENARIO_START)
                )
                if on != beside:
                    findings.append(
                        Finding(
                            "boundary",
                            "warning",
                            f"states.{name}",
                            f"{atom.text}: the value on the threshold decides {on[1]}, "
                            "but the value just "
                            f"on its {'inner' if holds_on else 'outer'} side decides {beside[1]}",
                        )
                    )
    return cases, findings


def _around(threshold: Fraction) -> list[tuple[str, Fraction]]:
    step_ = abs(threshold) / 100 if threshold else Fraction(1, 100)
    return [("just below", threshold - step_), ("on", threshold), ("just above", threshold + step_)]


def _nudge(atom: Comparison, holds_on: bool) -> Fraction:
    """A value next to the threshold, on the side where the comparison is as true as on it."""
    step_ = abs(atom.factor) / 1000 if atom.factor else Fraction(1, 1000)
    below_holds = atom.op in ("<", "<=")
    inward = -step_ if below_holds else step_
    return atom.factor + (inward if holds_on else -inward)


def _base(protocol: Protocol, reader: ObservationReader) -> list[Observation]:
    """The protocol's scenario defaults as observations: an ordinary patient to vary."""
    texts: dict[str, str] = {}
    if protocol.scenarios:
        texts = {
            name: text for name, (text, _) in protocol.scenarios[0].visits[0].observations.items()
        }
    observations = []
    for name, text in texts.items():
        try:
            observations.append(reader.read(name, text, SCENARIO_START))
        except DosingError:
            continue
    return observations


def _decide(
    protocol: Protocol, state: str, base: list[Observation], varied: Observation
) -> tuple[str, str, str]:
    started = SCENARIO_START - dt.timedelta(days=60)
    record = PatientRecord(
        state=state, state_since=started, therapy_started_on=started, dose_since=started
    )
    observations = [o for o in base if o.name != varied.name] + [varied]
    try:
        decision, _ = step(protocol, record, SCENARIO_START, observations)
    except DosingError as error:
        return ("error", type(error).__name__, "")
    return (decision.state, decision.action, ", ".join(d.short() for d in decision.doses))


def scenario_coverage(protocol: Protocol) -> tuple[int, list[Finding], int]:
    fired: set[tuple[str, str]] = set()
    findings = []
    for scenario in protocol.scenarios:
        try:
            results = run_scenario(protocol, scenario)
        except DosingError as error:
            findings.append(Finding("scenario", "error", f"scenario '{scenario.name}'", str(error)))
            continue
        for result in results:
            for failure in result.failures:
                findings.append(
                    Finding(
                        "scenario",
                        "error",
                        f"scenario '{scenario.name}' day {result.visit.day}",
                        failure,
                    )
                )
            for rule in result.decision.rules:
                fired.add((result.origin, rule.id))
    exercised = 0
    for name, state in protocol.states.items():
        for index, transition in enumerate(state.transitions):
            if (name, transition.rule) in fired:
                exercised += 1
            else:
                findings.append(
                    Finding(
                        "coverage",
                        "warning",
                        f"states.{name}.transitions[{index}]",
                        f"no scenario makes rule '{transition.rule}' fire",
                    )
                )
    return exercised, findings, len(protocol.scenarios)
