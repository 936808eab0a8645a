"""Label invariants: loaded strictly, watched along a course, and found broken by `dosing check`
on the protocols as they were before the issue-9 review (tests/verify/fixtures)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from fractions import Fraction

import attrs
import pytest

from dosing.core.errors import ProtocolError
from dosing.engine.decision import Decision, DoseLine, RuleRef
from dosing.engine.observations import read_observation
from dosing.engine.patient import PatientRecord
from dosing.protocol.loader import load_protocol
from dosing.protocol.model import Action, Protocol
from dosing.verify.invariants import CourseWatch
from tests.conftest import ROOT

TACROLIMUS = (ROOT / "protocols" / "tacrolimus-trough.yaml").read_text(encoding="utf-8")
DAY = dt.date(2026, 3, 2)


def with_invariants(block: str) -> Protocol:
    """tacrolimus-trough with its label invariants replaced by `block`."""
    start = TACROLIMUS.index("\ninvariants:\n")
    end = TACROLIMUS.index("\nscenario_defaults:")
    return load_protocol(
        TACROLIMUS[:start] + "\ninvariants:\n" + block + TACROLIMUS[end:], "tacrolimus-trough.yaml"
    )


def decided(
    action: Action,
    mg_bid: str | None = None,
    day: dt.date = DAY,
    next_in: int | None = None,
    rule: str = "a-rule",
) -> Decision:
    doses = () if mg_bid is None else (DoseLine("tacrolimus", Fraction(mg_bid), "mg", "bid"),)
    return Decision(
        None, day, "tacrolimus-trough", "1", "", "on_tacrolimus", action, doses,
        None if next_in is None else day + dt.timedelta(days=next_in),
        (RuleRef(rule, "test"),), (), (),
    )  # fmt: skip


class Course:
    """Feeds visits to a CourseWatch, a record carried along as the engine would."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.watch = CourseWatch.of(protocol)
        self.record = PatientRecord(
            state="on_tacrolimus", therapy_started_on=DAY - dt.timedelta(days=30)
        )

    def visit(self, day: int, decision: Decision, **labs: str) -> list[str]:
        date = DAY + dt.timedelta(days=day)
        observations = [read_observation(self.protocol, k, v, date) for k, v in labs.items()]
        found = self.watch.visit(self.record, date, observations, _on(decision, date))
        return [f"{breach.invariant.name}: {breach.message}" for breach in found]


def _on(decision: Decision, date: dt.date) -> Decision:
    shift = None if decision.next_check is None else decision.next_check - decision.date
    return attrs.evolve(decision, date=date, next_check=None if shift is None else date + shift)


NO_INCREASE = """  - name: no increase with a trough at or above 5 ng/mL
    never: [increase]
    while: tacrolimus_trough >= 5 ng/mL
    source: NCT03918265
    quote: "trough target 5-10 ng/mL"
"""


def test_never_while_a_value_holds() -> None:
    course = Course(with_invariants(NO_INCREASE))
    assert course.visit(0, decided("increase", "1.5"), tacrolimus_trough="4.9 ng/mL") == []
    [found] = course.visit(7, decided("increase", "2"), tacrolimus_trough="6.2 ng/mL")
    assert found.startswith("no increase with a trough at or above 5 ng/mL: 2026-03-09: INCREASE")
    assert "(while tacrolimus_trough >= 5 ng/mL)" in found
    assert "not known" not in found


def test_a_missing_value_never_excuses_what_the_source_forbids() -> None:
    """No trough at the visit: the condition cannot be ruled out, so the increase breaks it,
    and the breach says what was not known."""
    course = Course(with_invariants(NO_INCREASE))
    [found] = course.visit(0, decided("increase", "1.5"))
    assert found.endswith("not known at this visit: tacrolimus_trough")


def test_once_holds_from_the_visit_it_is_seen_on() -> None:
    protocol = with_invariants(
        """  - name: no increase once a trough was above 15
    never: [increase]
    once: tacrolimus_trough > 15 ng/mL
    source: NCT03918265
    quote: "(a test invariant)"
"""
    )
    course = Course(protocol)
    assert course.visit(0, decided("increase", "1.5"), tacrolimus_trough="4 ng/mL") == []
    assert course.visit(3, decided("decrease", "1"), tacrolimus_trough="16 ng/mL") == []
    [found] = course.visit(10, decided("increase", "1.5"), tacrolimus_trough="4 ng/mL")
    assert "(once tacrolimus_trough > 15 ng/mL has held)" in found


@pytest.mark.parametrize(("gap", "broken"), [(7, True), (13, True), (14, False)])
def test_after_an_event_within_days(gap: int, broken: bool) -> None:
    protocol = with_invariants(
        """  - name: no increase within 14 days of a decrease
    never: [increase]
    after: [decrease]
    within: 14 days
    source: NCT03918265
    quote: "(a test invariant)"
"""
    )
    course = Course(protocol)
    assert course.visit(0, decided("increase", "1.5")) == []  # no decrease yet
    assert course.visit(3, decided("decrease", "1")) == []
    found = course.visit(3 + gap, decided("increase", "1.5"))
    assert bool(found) is broken
    if broken:
        assert "(after decrease within 14 days)" in found[0]


def test_after_an_event_a_number_of_times() -> None:
    protocol = with_invariants(
        """  - name: no increase after two decreases
    never: [increase]
    after: [decrease]
    times: 2
    source: NCT03918265
    quote: "(a test invariant)"
"""
    )
    course = Course(protocol)
    assert course.visit(0, decided("decrease", "1")) == []
    assert course.visit(3, decided("increase", "1.5")) == []  # one decrease so far
    assert course.visit(6, decided("decrease", "1")) == []
    assert course.visit(9, decided("increase", "1.5")) != []


def test_until_ends_what_once_started() -> None:
    """'once counts were at the stop level, no resume below the restart level, until the next
    resume': the resume ends the period, and a later one needs the condition seen again."""
    protocol = with_invariants(
        """  - name: no increase at a trough above 10 once one was above 15, until a decrease
    never: [increase]
    while: tacrolimus_trough > 10 ng/mL
    once: tacrolimus_trough > 15 ng/mL
    until: [decrease]
    source: NCT03918265
    quote: "(a test invariant)"
"""
    )
    course = Course(protocol)
    assert course.visit(0, decided("continue", "2"), tacrolimus_trough="16 ng/mL") == []
    [found] = course.visit(3, decided("increase", "2.5"), tacrolimus_trough="12 ng/mL")
    assert "(while tacrolimus_trough > 10 ng/mL; once tacrolimus_trough > 15 ng/mL" in found
    assert "since the last decrease" in found
    assert course.visit(6, decided("decrease", "1.5"), tacrolimus_trough="12 ng/mL") == []
    assert course.visit(9, decided("increase", "2"), tacrolimus_trough="12 ng/mL") == []


def test_until_ends_a_period_after_an_event() -> None:
    protocol = with_invariants(
        """  - name: no increase after a hold until a resume
    never: [increase]
    after: [hold]
    until: [resume]
    source: NCT03918265
    quote: "(a test invariant)"
"""
    )
    course = Course(protocol)
    assert course.visit(0, decided("hold")) == []
    [found] = course.visit(3, decided("increase", "2"))
    assert "(after hold until resume)" in found
    assert course.visit(6, decided("resume", "1.5")) == []
    assert course.visit(9, decided("increase", "2")) == []


STAYS = """  - name: below the dose at a hold
    stays_at_most_after: [hold]
    below: true
    until: [above-target]
    source: NCT03918265
    quote: "(a test invariant)"
"""


def test_after_a_hold_the_dose_stays_below_the_dose_at_the_interruption() -> None:
    course = Course(with_invariants(STAYS))
    assert course.visit(0, decided("continue", "2")) == []  # 4 mg/day given
    assert course.visit(3, decided("hold")) == []
    [found] = course.visit(10, decided("resume", "2"))
    assert "where the dose stays below 4 mg/day after hold" in found
    assert course.visit(17, decided("resume", "1.5")) == []


def test_the_rule_named_in_until_sets_a_new_level() -> None:
    course = Course(with_invariants(STAYS))
    course.visit(0, decided("continue", "2"))
    course.visit(3, decided("hold"))
    assert course.visit(10, decided("increase", "2.5", rule="above-target")) == []
    assert course.visit(17, decided("continue", "2.5")) == []  # at most the new level
    assert course.visit(24, decided("continue", "3")) != []


def test_recheck_within_days_of_the_actions_it_names() -> None:
    protocol = with_invariants(
        """  - name: recheck within 5 days of a change
    recheck_within: 5 days
    on: [increase, decrease]
    source: facts-tacrolimus
    quote: "recheck 3-5 days after a change (steady state)"
"""
    )
    course = Course(protocol)
    assert course.visit(0, decided("increase", "1.5", next_in=3)) == []
    assert course.visit(3, decided("continue", "1.5", next_in=14)) == []  # not a change
    [found] = course.visit(6, decided("decrease", "1", next_in=7))
    assert "next check in 7 days, not within 5 days" in found


def test_a_ceiling_on_some_actions_only() -> None:
    protocol = with_invariants(
        """  - name: the starting dose is 1 mg twice daily
    ceiling: 1 mg bid
    on: [start]
    source: NCT03918265
    quote: "tacrolimus 1 mg bid"
"""
    )
    course = Course(protocol)
    [found] = course.visit(0, decided("start", "1.5"))
    assert "START tacrolimus 1.5 mg bid (rule a-rule), above 2 mg/day" in found
    assert course.visit(3, decided("increase", "1.5")) == []


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "  - {name: x, ceiling: 1 mg bid, never: [start], source: NCT03918265, quote: q}\n",
            "invariants[0]: an invariant says one thing: exactly one of ceiling, floor, never, "
            "stays_at_most_after or recheck_within (found ceiling, never)",
        ),
        (
            "  - {name: x, never: [start], source: NCT03918265, quote: ' '}\n",
            "invariants[0].quote: quote the source sentence the invariant encodes",
        ),
        (
            "  - {name: x, never: [stop], source: NCT03918265, quote: q}\n",
            "invariants[0].never[0]: 'stop' is not an action",
        ),
        (
            "  - {name: x, ceiling: 1 mg, source: NCT03918265, quote: q}\n",
            "invariants[0].ceiling: '1 mg': write a dose and how often, e.g. '25 mg bid'",
        ),
        (
            "  - {name: x, never: [increase], within: 3 days, source: NCT03918265, quote: q}\n",
            "invariants[0].within: 'within' counts from an event: give 'after'",
        ),
        (
            "  - {name: x, never: [increase], after: [taper], source: NCT03918265, quote: q}\n",
            "invariants[0].after[0]: 'taper' is neither an action nor a rule",
        ),
        (
            "  - {name: x, never: [increase], while: tacrolimus_dose > 2 mg, source: NCT03918265, "
            "quote: q}\n",
            "invariants[0].while: ",
        ),
        (
            "  - {name: x, never: [increase], source: nowhere, quote: q}\n",
            "invariants[0].source: ",
        ),
        (
            "  - {name: x, never: [increase], until: [resume], source: NCT03918265, quote: q}\n",
            "invariants[0].until: 'until' ends what 'after' or 'once' started: give one",
        ),
        (
            "  - {name: x, never: [increase], after: [hold], until: [taper], source: NCT03918265, "
            "quote: q}\n",
            "invariants[0].until[0]: 'taper' is neither an action nor a rule",
        ),
    ],
    ids=[
        "two forms",
        "no quote",
        "not an action",
        "no frequency",
        "within alone",
        "unknown event",
        "reads the rules' memory",
        "unknown source",
        "until alone",
        "until an unknown event",
    ],
)
def test_an_invariant_that_is_not_exactly_understood_is_refused(block: str, message: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        with_invariants(block)
    assert message in str(raised.value)


def check_fixture(name: str) -> dict[str, object]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "dosing", "check", f"tests/verify/fixtures/{name}", "--json"],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    [report] = json.loads(result.stdout)
    assert isinstance(report, dict)
    return report


def broken_invariants(report: dict[str, object]) -> dict[str, dict[str, object]]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return {f["where"]: f for f in findings if f["check"] == "invariant"}


def test_the_hlh_protocol_before_the_review_gives_an_adult_sized_dose() -> None:
    """No ceiling on 25 mg/m² bid: a large patient gets more than the label's 25 mg bid."""
    broken = broken_invariants(check_fixture("ruxolitinib-hlh-before-issue-9.yaml"))
    found = broken["invariants: ruxolitinib at most 25 mg twice daily"]
    assert found["severity"] == "error"
    message = str(found["message"])
    assert "above 50 mg/day" in message
    assert '"Dose increases ... at most 25 mg bid"' in message
    assert "Minimal timeline from screening:" in message
    assert found["timeline"]


def test_the_ruxolitinib_protocol_before_the_review_restarts_while_neutropenic() -> None:
    """The old restart after a platelet hold read platelets only: it restarts with ANC < 0.5."""
    broken = broken_invariants(check_fixture("ruxolitinib-hes-before-issue-9.yaml"))
    restart = broken["invariants: no dose while ANC is below 0.5"]
    assert "RESUME" in str(restart["message"])
    assert "(while anc < 0.5 x10^9/L)" in str(restart["message"])
    timeline = restart["timeline"]
    assert isinstance(timeline, list)
    assert timeline
    assert "-> RESUME" in timeline[-1]


def test_mutation_counts_the_mutants_only_a_label_invariant_catches() -> None:
    """Without the scenarios on a trough of exactly 10 ng/mL, 'decrease above 10' read as
    'at or above 10' survives the scenarios; 'no decrease with a trough at or below 10 ng/mL'
    (the seed's 5-10 target) catches it on generated courses."""
    from dosing.verify.mutation import mutation_score

    text = TACROLIMUS
    for name in ("a trough of exactly 10 ng/mL continues", "a trough of exactly 10 ug/L continues"):
        start = text.index(f"  - name: {name}\n")
        text = text[:start] + text[text.index("  - name:", start + 10) :]
    text += """  - name: a trough reported at screening is not read there
    visits:
      - labs: {tacrolimus_trough: 10 ng/mL}
        expect: {state: on_tacrolimus, action: start}
"""
    result = mutation_score(load_protocol(text, "tacrolimus-trough.yaml"), invariant_examples=100)
    [survivor] = result.survivors
    assert survivor.change == "'tacrolimus_trough > 10 ng/mL' with > read as >="
    assert result.by_invariants == (survivor,)
    assert str(result).endswith("the label invariants catch 1 of the 1 left (100% with both)")
    [finding] = result.findings()
    assert finding.severity == "note"
    assert finding.message.endswith("(a label invariant catches it)")


def test_a_reversed_hold_breaks_the_label_invariant_it_contradicts() -> None:
    """imatinib-hes with the hematologic hold reversed (held while ANC is normal, given once
    it falls) gives a dose while ANC is below 1.0, which the label forbids."""
    from dosing.verify.property_search import search_all

    text = (ROOT / "protocols" / "imatinib-hes.yaml").read_text(encoding="utf-8")
    hold = "when: anc < 1.0 x10^9/L or platelets < 50 x10^9/L\n        to: hold_heme"
    assert hold in text
    reversed_hold = text.replace(hold, hold.replace("anc < 1.0", "anc >= 1.0"))
    protocol = attrs.evolve(load_protocol(reversed_hold, "imatinib-hes.yaml"), properties=())
    broken = {found.property: found for found in search_all(protocol, examples=20)}
    [name] = [n for n in broken if n.startswith("no dose while ANC is below 1.0")]
    assert "ANC < 1.0 and/or platelets < 50" in broken[name].source
