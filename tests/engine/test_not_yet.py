"""Missing data that means "not yet": a rule that waits for it lets the visit continue as
before, naming what to measure or assess and by when; assessments that rarely change are
carried forward within a maximum age; a hold, stop or exclusion still never waits."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import attrs
import pytest

from dosing.engine.decision import Decision
from dosing.engine.gathering import missing_for_decision
from dosing.engine.observations import Observation, read_observation
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.loader import load_protocol
from dosing.protocol.model import Protocol
from dosing.verify.check import not_yet
from dosing.verify.invariants import CourseWatch
from tests.conftest import ROOT, load_file

DAY = dt.date(2026, 3, 2)


def shipped(name: str) -> Protocol:
    return load_file(ROOT / "protocols" / f"{name}.yaml")


def observe(protocol: Protocol, values: dict[str, str], day: dt.date = DAY) -> list[Observation]:
    return [read_observation(protocol, name, text, day) for name, text in values.items()]


def days(number: int) -> dt.timedelta:
    return dt.timedelta(days=number)


# ---------------------------------------------------------------- tacrolimus: no fresh trough


def _on_tacrolimus(**record: object) -> PatientRecord:
    return PatientRecord(
        **{
            "state": "on_tacrolimus",
            "state_since": DAY - days(40),
            "therapy_started_on": DAY - days(40),
            "dose_since": DAY - days(10),
            "memory": {"tacrolimus_dose": Fraction(2)},
            **record,
        }  # type: ignore[arg-type]
    )


def test_tacrolimus_without_a_trough_continues_the_dose_and_asks_for_one() -> None:
    """Issue 11: a tacrolimus visit without a trough gives continue at the current dose, asks
    for a trough, and sets the next check within trough_wait_recheck (3 days)."""
    tacrolimus = shipped("tacrolimus-trough")
    visit = observe(tacrolimus, {"age": "50", "sample_timing": "trough"})
    decision, after = step(tacrolimus, _on_tacrolimus(), DAY, visit, "P01")
    assert decision.action == "continue"
    assert [str(dose) for dose in decision.doses] == ["tacrolimus 2 mg bid"]
    assert decision.next_check == DAY + days(3)
    assert decision.reasons[0] == (
        "Not yet: rules 'trough-far-above-target-refer', 'below-target', 'above-target' wait "
        "for tacrolimus trough; the current dose continues until then"
    )
    assert decision.warnings == (
        "tacrolimus trough was not given: measure tacrolimus trough",
        "Still to measure or assess by the next check (2026-03-05): tacrolimus trough",
    )
    assert decision.to_json()["awaiting"] == ["tacrolimus_trough"]
    assert (after.state, after.memory["tacrolimus_dose"], after.dose_since) == (
        "on_tacrolimus",
        Fraction(2),
        DAY - days(10),
    )


@pytest.mark.parametrize(
    ("drawn", "dose_since", "warning"),
    [
        (4, 10, "tacrolimus trough from 2026-02-26 is 4 days old (at most 3 days)"),
        (3, 2, "was drawn before the current dose started (2026-02-28)"),
        (0, 2, "2 days after the dose changed (2026-02-28), before steady state (3 days)"),
    ],
    ids=["too old", "before the dose", "before steady state"],
)
@pytest.mark.parametrize(("trough", "action"), [("7 ng/mL", "continue"), ("3 ng/mL", "refer")])
def test_a_trough_that_cannot_be_used_continues_the_dose_unless_it_calls_for_a_change(
    drawn: int, dose_since: int, warning: str, trough: str, action: str
) -> None:
    """Stale, drawn on the old dose, or before steady state: not dosed on. Within the 5-10
    target the dose goes on; a last level that would call for a change (3 ng/mL; or 40, the
    independent review's case) is not 'nothing yet': referred."""
    tacrolimus = shipped("tacrolimus-trough")
    visit = [
        *observe(tacrolimus, {"age": "50", "sample_timing": "trough"}),
        read_observation(tacrolimus, "tacrolimus_trough", trough, DAY - days(drawn)),
    ]
    record = _on_tacrolimus(dose_since=DAY - days(dose_since))
    decision, _ = step(tacrolimus, record, DAY, visit)
    doses = ["2 mg bid"] if action == "continue" else []
    assert (decision.action, [d.short() for d in decision.doses]) == (action, doses)
    assert any(warning in line for line in decision.warnings), decision.warnings


def test_the_dose_continues_without_a_trough_for_at_most_trough_wait_at_most() -> None:
    """Not without limit: 14 days (site parameter) after the last trough drawn, referred."""
    tacrolimus = shipped("tacrolimus-trough")
    last = read_observation(tacrolimus, "tacrolimus_trough", "7 ng/mL", DAY - days(14))
    record = attrs.evolve(
        _on_tacrolimus(dose_since=DAY - days(30)), observations={"tacrolimus_trough": last}
    )
    visit = observe(tacrolimus, {"age": "50", "sample_timing": "trough"})
    on_day_14, _ = step(tacrolimus, record, DAY, visit)
    assert on_day_14.action == "continue"
    later = [*observe(tacrolimus, {"age": "50", "sample_timing": "trough"}, DAY + days(1))]
    on_day_15, _ = step(tacrolimus, record, DAY + days(1), later)
    assert (on_day_15.action, on_day_15.doses) == ("refer", ())


def test_a_trough_whose_timing_is_not_recorded_is_still_referred() -> None:
    """The trough is there: the rules do not wait for it, and its timing is lacking."""
    tacrolimus = shipped("tacrolimus-trough")
    visit = observe(tacrolimus, {"age": "50", "tacrolimus_trough": "7 ng/mL"})
    decision, _ = step(tacrolimus, _on_tacrolimus(), DAY, visit)
    assert (decision.action, decision.doses) == ("refer", ())
    assert "sample_timing was not given" in decision.warnings


def test_the_prompt_asks_for_what_waiting_rules_wait_for() -> None:
    """The decision is made without it, but the prompt still asks for it (Enter skips); the
    timing of a trough that was not drawn is not asked for."""
    tacrolimus = shipped("tacrolimus-trough")
    visit = observe(tacrolimus, {"age": "50"})
    lacking = missing_for_decision(tacrolimus, _on_tacrolimus(), DAY, visit)
    assert lacking == {"tacrolimus_trough"}
    imatinib = shipped("imatinib-hes")
    visit = observe(imatinib, {**ADULT, **NORMAL})
    assert missing_for_decision(imatinib, _after_the_evaluation(), DAY, visit) == {"response"}


# ---------------------------------------------------------------- imatinib-hes: carried, awaited

ADULT = {"age": "45", "sex": "F", "weight": "70 kg", "height": "170 cm", "bleeding": "no"}
NORMAL = {
    "anc": "4 x10^9/L",
    "platelets": "250 x10^9/L",
    "alt": "25 U/L",
    "ast": "25 U/L",
    "bilirubin": "0.6 mg/dL",
}


def _in_complete_response(since: int) -> PatientRecord:
    return PatientRecord(
        state="dose_400_cr",
        state_since=DAY - days(since),
        therapy_started_on=DAY - days(since + 40),
        dose_since=DAY - days(since + 40),
        memory={"evaluated": Fraction(1)},
    )


@pytest.mark.parametrize(("assessed", "carried"), [(31, True), (91, True), (92, False)])
def test_a_complete_response_visit_carries_life_threatening_within_its_age(
    assessed: int, carried: bool
) -> None:
    """Issue 11: life_threatening assessed earlier is used up to assessment_max_age (13 weeks,
    91 days) after; the taper then starts without it being typed again. Older: not used, and
    the taper waits for it (the dose continues)."""
    imatinib = shipped("imatinib-hes")
    earlier = DAY - days(assessed)
    record = attrs.evolve(
        _in_complete_response(since=35),
        observations={
            "life_threatening": read_observation(imatinib, "life_threatening", "no", earlier)
        },
    )
    visit = observe(imatinib, {**ADULT, **NORMAL, "response": "complete"})
    decision, after = step(imatinib, record, DAY, visit)
    if carried:
        assert (decision.action, [d.short() for d in decision.doses]) == ("decrease", ["300 mg qd"])
        assert after.state == "taper"
        assert (
            f"life_threatening: no, as assessed on {earlier} ({assessed} days ago; carried "
            "forward for at most 91 days, NCT00044304: Detailed Description"
        ) in " ".join(decision.reasons)
    else:
        assert (decision.action, [d.short() for d in decision.doses]) == ("continue", ["400 mg qd"])
        assert after.state == "dose_400_cr"
        assert (
            f"life_threatening was assessed on {earlier}, 92 days ago (carried forward for at "
            "most 91 days): not used; assess life_threatening again"
        ) in decision.warnings
        assert decision.awaiting == ("life_threatening",)


def test_an_assessment_not_carried_forward_is_still_needed_at_the_visit() -> None:
    """relapse is not carried: during the taper every visit needs it (the reviewed file)."""
    imatinib = shipped("imatinib-hes")
    record = PatientRecord(
        state="taper",
        state_since=DAY - days(100),
        therapy_started_on=DAY - days(300),
        dose_since=DAY - days(40),
        memory={"level": Fraction(300), "evaluated": Fraction(1)},
        observations={"relapse": read_observation(imatinib, "relapse", "no", DAY - days(7))},
    )
    visit = observe(imatinib, {**ADULT, **NORMAL, "response": "complete", "life_threatening": "no"})
    decision, _ = step(imatinib, record, DAY, visit)
    assert (decision.action, decision.doses) == ("refer", ())
    assert "relapse was assessed on 2026-02-23, not at this visit" in decision.warnings


def _after_the_evaluation() -> PatientRecord:
    return PatientRecord(
        state="dose_400",
        state_since=DAY - days(60),
        therapy_started_on=DAY - days(60),
        dose_since=DAY - days(60),
        memory={"evaluated": Fraction(1)},
    )


def test_after_the_evaluation_a_visit_without_response_continues_400_mg() -> None:
    """Response is assessed at the clinic visits, not at every laboratory check."""
    imatinib = shipped("imatinib-hes")
    visit = observe(imatinib, {**ADULT, **NORMAL})
    decision, _ = step(imatinib, _after_the_evaluation(), DAY, visit)
    assert (decision.action, [d.short() for d in decision.doses]) == ("continue", ["400 mg qd"])
    assert decision.warnings[-1] == (
        "Still to measure or assess by the next check (2026-03-16): response"
    )


@pytest.mark.parametrize("lab", ["anc", "platelets", "alt", "bilirubin"])
def test_a_visit_where_a_hold_rule_lacks_its_lab_is_still_refer(lab: str) -> None:
    """Issue 11: with the response awaited, a missing lab that a hold reads still gives no
    dose: a hold is never skipped because its data is missing."""
    imatinib = shipped("imatinib-hes")
    labs = {name: text for name, text in NORMAL.items() if name != lab}
    visit = observe(imatinib, {**ADULT, **labs})
    decision, after = step(imatinib, _after_the_evaluation(), DAY, visit)
    assert (decision.action, decision.doses, decision.awaiting) == ("refer", (), ())
    assert decision.reasons[0].startswith("Cannot decide in state dose_400: rule ")
    assert after.state == "dose_400"


def test_a_certain_hold_below_waiting_rules_is_stated() -> None:
    """Platelets 40 and no response: the hold is stated, and the waiting rules named."""
    imatinib = shipped("imatinib-hes")
    visit = observe(imatinib, {**ADULT, **NORMAL, "platelets": "40 x10^9/L"})
    decision, after = step(imatinib, _after_the_evaluation(), DAY, visit)
    assert (decision.action, after.state) == ("hold", "hold_heme")


# ---------------------------------------------------------------- the engine, on a small protocol

SMALL = """
id: small
title: Waiting rules
drug: imatinib
version: "1"
sources:
  - {id: seed-000, kind: trial, ref: NCT00044304, cite: shared/seeds/000_e4c5e8b15439c370.txt}
limits: {max_daily_dose: 600 mg}
inputs:
  labs:
    anc: {max_age: 7 days}
    platelets: {max_age: 7 days}
  facts: [age]
  assessments: [response]
states:
  screening:
    initial: true
    source: "seed-000: Eligibility"
    transitions:
      - rule: start
        when: age >= 18 years
        to: dose_400
        action: start
        source: "seed-000: x"
        message: Start.
  dose_400:
    source: "seed-000: x"
    stay: continue
    doses: [{drug: imatinib, amount: 400 mg, frequency: qd}]
    monitoring: [{every: 14 days, source: "seed-000: x"}]
    transitions:
      - rule: escalate
        when: response == none
        to: dose_600
        action: increase
        priority: 50
        source: "seed-000: x"
        message: Escalate.
        waits_for:
          data: [response]
          because: "response is assessed monthly"
          source: "seed-000: y"
          recheck: 5 days
      - rule: hold
        when: anc < 1.0 x10^9/L
        to: held
        action: hold
        priority: 40
        source: "seed-000: x"
        message: Hold.
      - rule: low-platelets-refer
        when: platelets < 50 x10^9/L
        to: dose_400
        action: refer
        priority: 30
        source: "seed-000: x"
        message: Refer.
      - rule: reduce
        when: platelets < 100 x10^9/L
        to: dose_300
        action: decrease
        priority: 20
        source: "seed-000: x"
        message: Reduce.
  dose_300:
    source: "seed-000: x"
    stay: continue
    doses: [{drug: imatinib, amount: 300 mg, frequency: qd}]
  dose_600:
    source: "seed-000: x"
    stay: continue
    doses: [{drug: imatinib, amount: 600 mg, frequency: qd}]
  held:
    source: "seed-000: x"
    stay: hold
"""


@pytest.fixture(scope="module")
def small() -> Protocol:
    return load_protocol(SMALL, "small.yaml")


def _decide(small: Protocol, values: dict[str, str]) -> Decision:
    record = PatientRecord(state="dose_400", therapy_started_on=DAY - days(30))
    return step(small, record, DAY, observe(small, {"age": "50", **values}))[0]


@pytest.mark.parametrize(
    ("values", "action", "rule"),
    [
        ({"anc": "2 x10^9/L", "platelets": "200 x10^9/L"}, "continue", "dose_400:continue"),
        ({"anc": "0.5 x10^9/L", "platelets": "200 x10^9/L"}, "hold", "hold"),
        ({"anc": "2 x10^9/L", "platelets": "40 x10^9/L"}, "refer", "low-platelets-refer"),
        ({"anc": "2 x10^9/L", "platelets": "80 x10^9/L"}, "refer", None),
        ({"platelets": "200 x10^9/L"}, "refer", None),
        (
            {"anc": "2 x10^9/L", "platelets": "200 x10^9/L", "response": "none"},
            "increase",
            "escalate",
        ),
    ],
    ids=[
        "only a waiting rule: the stay",
        "a certain hold below: stated",
        "a certain referral below: stated",
        "a dose below: not given",
        "another rule lacks its lab: refer",
        "the data is there: the rule applies",
    ],
)
def test_what_a_waiting_rule_lets_through(
    small: Protocol, values: dict[str, str], action: str, rule: str | None
) -> None:
    decision = _decide(small, values)
    assert decision.action == action
    assert [r.id for r in decision.rules] == ([rule] if rule else [])


def test_a_waiting_decision_names_why_and_rechecks_sooner(small: Protocol) -> None:
    """The declaration's reason and source are given; its recheck (5 days) comes before the
    state's cadence (14 days)."""
    decision = _decide(small, {"anc": "2 x10^9/L", "platelets": "200 x10^9/L"})
    assert decision.reasons[:2] == (
        "Not yet: rule 'escalate' waits for response; the current dose continues until then",
        "Not yet, because response is assessed monthly (seed-000: y)",
    )
    assert decision.next_check == DAY + days(5)
    assert decision.awaiting == ("response",)


def test_a_hold_below_a_waiting_rule_says_the_rule_waits(small: Protocol) -> None:
    decision = _decide(small, {"anc": "0.5 x10^9/L", "platelets": "200 x10^9/L"})
    assert decision.warnings[0] == (
        "rule 'escalate' could not be decided (needs response); the hold is stated all the "
        "same: response still to be measured or assessed before any dose"
    )


def test_a_waiting_decision_round_trips_through_json(small: Protocol) -> None:
    from dosing.engine.decision import decision_from_json

    decision = _decide(small, {"anc": "2 x10^9/L", "platelets": "200 x10^9/L"})
    assert decision_from_json(decision.to_json()) == decision
    other = _decide(small, {"anc": "0.5 x10^9/L", "platelets": "200 x10^9/L"})
    assert "awaiting" not in other.to_json()


# ---------------------------------------------------------------- invariants and dosing check


def test_an_invariant_on_awaited_data_does_not_apply_to_a_waiting_visit() -> None:
    """imatinib-low-dose-mdacc: 'progression at any time is dosed at 400 mg daily' (a floor
    while response == progression). Response not assessed, the rules wait: 100 mg continues,
    which is no breach; the same 100 mg with the response unknown for no declared reason
    (a decision not waiting for it) still breaks it."""
    mdacc = shipped("imatinib-low-dose-mdacc")
    record = PatientRecord(
        state="dose_100", therapy_started_on=DAY - days(10), dose_since=DAY - days(10)
    )
    visit = observe(
        mdacc,
        {
            "age": "50",
            "anc": "4 x10^9/L",
            "platelets": "250 x10^9/L",
            "alt": "25 U/L",
            "ast": "25 U/L",
            "bilirubin": "0.6 mg/dL",
            "creatinine": "0.9 mg/dL",
        },
    )
    decision, _ = step(mdacc, record, DAY, visit)
    assert (decision.action, decision.awaiting) == ("continue", ("response",))
    assert CourseWatch.of(mdacc).visit(record, DAY, visit, decision) == []
    unexplained = attrs.evolve(decision, awaiting=())
    [breach] = CourseWatch.of(mdacc).visit(record, DAY, visit, unexplained)
    assert breach.invariant.name == "progression at any time is dosed at 400 mg daily"
    assert breach.message.endswith("not known at this visit: response")


def test_dosing_check_lists_every_rule_that_waits_and_every_assessment_carried() -> None:
    tacrolimus = shipped("tacrolimus-trough")
    found = list(not_yet(tacrolimus))
    assert [f.where for f in found] == [
        "states.on_tacrolimus: not-a-trough",
        "states.on_tacrolimus: trough-far-above-target-refer",
        "states.on_tacrolimus: below-target",
        "states.on_tacrolimus: above-target",
    ]
    assert {f.severity for f in found} == {"note"}
    assert found[2].message.startswith(
        "increase waits for tacrolimus_trough: without it, continue as before; check again "
        "within 3 days. Because every rule here acts on a trough"
    )
    carried = [f for f in not_yet(shipped("imatinib-hes")) if f.check == "carried forward"]
    assert [(f.where, f.message.split(" (")[0]) for f in carried] == [
        (
            "inputs.carry_forward.life_threatening",
            "life_threatening is used at later visits for at most 91 days after it was assessed",
        )
    ]


@pytest.mark.parametrize(
    "name",
    [
        "imatinib-escalation-nilg",
        "imatinib-hes",
        "imatinib-low-dose-mdacc",
        "tacrolimus-trough",
    ],
)
def test_no_shipped_rule_that_waits_holds_stops_or_cuts_for_toxicity(name: str) -> None:
    """The loader's refusal, checked again on what ships: the waiting rules' actions."""
    protocol = shipped(name)
    actions = {t.action for state in protocol.states.values() for t in state.transitions if t.waits}
    assert actions
    assert not actions & {"hold", "discontinue", "ineligible"}


def test_dosing_diff_shows_a_rule_that_now_waits(small: Protocol) -> None:
    from dosing.replay.diff import rule_changes

    start = SMALL.index("        waits_for:\n")
    end = SMALL.index("      - rule: hold\n")
    before = load_protocol(SMALL[:start] + SMALL[end:], "small.yaml")
    [change] = rule_changes(before, small)
    assert (change.where, change.what) == ("states.dose_400: escalate", "waits for")
    assert change.old == "-"
    assert change.new == "response (response is assessed monthly; seed-000: y)"
