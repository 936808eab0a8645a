"""Running a protocol's own scenarios: each visit's decision against what the file expects."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import attrs

from dosing.engine.decision import Decision
from dosing.engine.observations import Observation, read_observation
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.model import Protocol, Scenario, ScenarioVisit

SCENARIO_START = dt.date(2026, 1, 5)
"""Day 0 of every scenario (any date would do; a fixed one keeps reports stable)."""


@attrs.frozen
class VisitResult:
    """One scenario visit: where it started, what was observed, what was decided, what failed."""

    visit: ScenarioVisit
    origin: str
    observations: tuple[Observation, ...]
    decision: Decision
    failures: tuple[str, ...]


def run_scenario(
    protocol: Protocol,
    scenario: Scenario,
    respell: Mapping[str, str] | None = None,
) -> list[VisitResult]:
    """Run every visit of a scenario in order. `respell` maps typed text to an equivalent."""
    record = starting_record(protocol, scenario)
    results = []
    for visit in scenario.visits:
        date = SCENARIO_START + dt.timedelta(days=visit.day)
        observations = tuple(
            read_observation(
                protocol,
                name,
                (respell or {}).get(text, text),
                date - dt.timedelta(days=days_before),
            )
            for name, (text, days_before) in visit.observations.items()
        )
        origin = record.state or protocol.initial
        decision, record = step(protocol, record, date, observations, scenario.name)
        results.append(
            VisitResult(visit, origin, observations, decision, _failures(visit, decision))
        )
    return results


def starting_record(protocol: Protocol, scenario: Scenario) -> PatientRecord:
    """The patient as the scenario starts, on SCENARIO_START."""
    memory = {**{k: s.initial for k, s in protocol.memory.items()}, **scenario.start_memory}
    started = None
    if scenario.start_days_on_therapy is not None:
        started = SCENARIO_START - dt.timedelta(days=scenario.start_days_on_therapy)
    dosed = since = started
    if scenario.start_days_at_dose is not None:
        dosed = SCENARIO_START - dt.timedelta(days=scenario.start_days_at_dose)
    if scenario.start_days_in_state is not None:
        since = SCENARIO_START - dt.timedelta(days=scenario.start_days_in_state)
    return PatientRecord(
        state=scenario.start_state,
        state_since=since,
        therapy_started_on=started,
        dose_since=dosed,
        memory=memory,
    )


def _failures(visit: ScenarioVisit, decision: Decision) -> tuple[str, ...]:
    failures = []
    if visit.expect_state is not None and decision.state != visit.expect_state:
        failures.append(f"state: expected {visit.expect_state}, got {decision.state}")
    fired = [rule.id for rule in decision.rules]
    if visit.expect_rule is not None and visit.expect_rule not in fired:
        failures.append(f"rule: expected {visit.expect_rule}, got {', '.join(fired) or 'none'}")
    if visit.expect_action is not None and decision.action != visit.expect_action:
        failures.append(f"action: expected {visit.expect_action}, got {decision.action}")
    if visit.expect_doses is not None:
        doses = tuple(dose.short() for dose in decision.doses)
        if doses != visit.expect_doses:
            failures.append(f"doses: expected {list(visit.expect_doses)}, got {list(doses)}")
    for wanted, got, what in (
        (visit.expect_reasons, decision.reasons, "reason"),
        (visit.expect_warnings, decision.warnings, "warning"),
    ):
        for text in wanted:
            if not any(text in line for line in got):
                failures.append(f"no {what} contains {text!r}; {what}s: {list(got)}")
    if visit.expect_next_check_days is not None:
        expected = decision.date + dt.timedelta(days=visit.expect_next_check_days)
        if decision.next_check != expected:
            failures.append(f"next check: expected {expected}, got {decision.next_check}")
    return tuple(failures)
