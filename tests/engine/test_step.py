"""The engine: pure, exact, and never dosing from missing or stale data."""

from __future__ import annotations

import datetime as dt
import itertools
import subprocess
import sys
from fractions import Fraction

import attrs
import pytest

from dosing.core.errors import EngineError
from dosing.engine.decision import Decision
from dosing.engine.observations import Observation, read_observation
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.model import Protocol

DAY = dt.date(2026, 1, 5)
ADULT = {"age": "45", "sex": "F", "bleeding": "no", "eligibility_confirmed": "yes"}
NORMAL = {
    "anc": "4 x10^9/L",
    "platelets": "250 x10^9/L",
    "alt": "25 U/L",
    "ast": "25 U/L",
    "bilirubin": "0.6 mg/dL",
}


def observe(protocol: Protocol, values: dict[str, str], day: dt.date = DAY) -> list[Observation]:
    return [read_observation(protocol, name, text, day) for name, text in values.items()]


def test_core_does_not_import_the_cli_libraries() -> None:
    """Loading and stepping a protocol imports neither rich nor typer."""
    code = (
        "import sys, datetime, pathlib;"
        "from dosing.protocol.loader import load_protocol; from dosing.engine.step import step;"
        "from dosing.engine.patient import PatientRecord;"
        "p = load_protocol(pathlib.Path('protocols/imatinib-hes.yaml').read_text());"
        "step(p, PatientRecord(), datetime.date(2026, 1, 5));"
        "bad = [m for m in ('rich', 'typer', 'click') if m in sys.modules];"
        "assert not bad, bad"
    )
    from tests.conftest import ROOT

    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_decision_record_contract(imatinib: Protocol) -> None:
    """The JSON record has exactly the contract's fields, in JSON types."""
    decision, _ = step(
        imatinib,
        PatientRecord(),
        DAY,
        observe(imatinib, {**ADULT, **NORMAL, "anc": "1.2 x10^9/L"}),
        "P01",
    )
    record = decision.to_json()
    assert list(record) == [
        "patient_id", "date", "protocol", "protocol_version", "protocol_sha256", "state",
        "action", "doses", "next_check", "rules", "reasons", "warnings",
    ]  # fmt: skip
    assert record["doses"] == [{"drug": "imatinib", "amount": 300, "unit": "mg", "frequency": "qd"}]
    assert record["date"] == "2026-01-05"
    assert record["next_check"] == "2026-01-12"
    assert record["rules"] == [
        {
            "id": "start-reduced",
            "source": "NCT00044304: Study Groups, Imatinib (starting dose reduced to 300 mg po qd)",
        }
    ]
    assert "ANC 1.2 x10^9/L < 1.5 x10^9/L (margin 0.3 x10^9/L)" in record["reasons"]


def run(
    protocol: Protocol, record: PatientRecord, values: dict[str, str], day: dt.date
) -> tuple[Decision, PatientRecord]:
    return step(protocol, record, day, observe(protocol, values, day))


def test_labs_carry_forward_within_their_maximum_age(imatinib: Protocol) -> None:
    """A week-old result is still used; an eight-day-old one is not, and the decision says so."""
    _, record = run(imatinib, PatientRecord(), {**ADULT, **NORMAL}, DAY)
    week_later = DAY + dt.timedelta(days=7)
    decision, record = run(imatinib, record, {"bleeding": "no"}, week_later)
    assert (decision.action, decision.state) == ("continue", "dose_400")
    decision, after = run(imatinib, record, {"anc": "3 x10^9/L"}, week_later + dt.timedelta(days=1))
    assert decision.action == "refer"
    assert decision.doses == ()
    stale = "platelets from 2026-01-05 is 8 days old (at most 7 days): not used; measure platelets"
    assert f"{stale} again" in decision.warnings
    assert after.state == "dose_400"
    assert after.observations["anc"].value == 3


def test_missing_labs_are_all_named_at_once(imatinib: Protocol) -> None:
    """With only an ANC, the refer asks for every lab the state's rules need."""
    decision, _ = run(imatinib, PatientRecord(), {**ADULT, "anc": "2 x10^9/L"}, DAY)
    assert decision.action == "refer"
    assert decision.reasons[0].startswith(
        "Cannot decide in state screening: rule 'exclude-liver' needs"
    )
    assert "needed here: ALT, AST, bilirubin, platelets" in decision.reasons[0]


def test_observation_after_the_visit_is_refused(imatinib: Protocol) -> None:
    """A result dated after the visit is an error, not a silently used value."""
    future = [read_observation(imatinib, "anc", "2 x10^9/L", DAY + dt.timedelta(days=1))]
    with pytest.raises(
        EngineError, match=r"anc is dated 2026-01-06, after the visit \(2026-01-05\)"
    ):
        step(imatinib, PatientRecord(), DAY, future)


def test_unused_observation_is_warned_about(imatinib: Protocol) -> None:
    """An observation the protocol does not read is reported, not silently dropped."""
    decision, _ = run(imatinib, PatientRecord(), {**ADULT, **NORMAL, "creatinine": "1 mg/dL"}, DAY)
    assert "creatinine is not used by imatinib-hes; ignored" in decision.warnings


def test_unknown_state_is_refused(imatinib: Protocol) -> None:
    """A record naming a state the protocol lacks is an error."""
    with pytest.raises(EngineError, match="'dose_900' is not a state of imatinib-hes"):
        step(imatinib, PatientRecord(state="dose_900"), DAY)


def test_memory_and_time_advance(imatinib: Protocol) -> None:
    """A hematologic hold counts itself and remembers the state it came from."""
    _, record = run(imatinib, PatientRecord(), {**ADULT, **NORMAL}, DAY)
    assert record.therapy_started_on == DAY
    later = DAY + dt.timedelta(days=14)
    decision, record = run(imatinib, record, {**NORMAL, "anc": "0.9 x10^9/L"}, later)
    assert decision.action == "hold"
    assert record.memory == {
        "heme_holds": 1,
        "held_from": "dose_400",
        "level": 400,
        "last_effective": 400,
        "evaluated": 0,
        "both_held": 0,
        "hepatic_reduced": 0,
        "lost_in_taper": 0,
    }
    assert record.state_since == later


def test_a_count_set_once_is_kept_when_the_visit_is_referred() -> None:
    """ruxolitinib-hes: platelets 90 seen at a visit that cannot decide (no ANC) still bar
    later increases: 'never < 100' covers every visit, referred ones too."""
    rux, record = _rux_at_15_mg()
    labs = {"platelets": "90 x10^9/L", "response": "partial"}
    decision, after = run(rux, record, labs, DAY)
    assert (decision.action, decision.doses) == ("refer", ())
    assert after.memory["platelets_fell_below_100"] == 1


def test_a_whole_taper_followed_on_the_dates_the_tool_gives() -> None:
    """imatinib-hes, an adult in complete response from the 4-week evaluation, seen on each
    next-check date the decisions give: 400 mg, then one step down after each month at a dose,
    to 100 mg and off; no visit is late for the taper, none stalls on a stale lab."""
    from tests.conftest import ROOT, load_file

    imatinib = load_file(ROOT / "protocols" / "imatinib-hes.yaml")
    labs = {**ADULT, **NORMAL, "relapse": "no", "life_threatening": "no"}
    record, day, given = PatientRecord(), DAY, []
    for _ in range(40):
        on_therapy = record.therapy_started_on is not None
        response = {"response": "complete"} if on_therapy else {}
        decision, record = run(imatinib, record, {**labs, **response}, day)
        assert decision.action != "refer", decision.reasons
        given.append((day, decision.action, [d.short() for d in decision.doses]))
        if decision.state == "off_drug":
            break
        assert decision.next_check is not None
        day = decision.next_check
    steps = [(d, doses) for d, action, doses in given if action in ("decrease", "discontinue")]
    assert [doses for _, doses in steps] == [["300 mg qd"], ["200 mg qd"], ["100 mg qd"], []]
    for (before, _), (after, _) in itertools.pairwise(steps):
        assert (after - before).days >= 30  # taper_interval: a month at each dose
    assert given[0][1:] == ("start", ["400 mg qd"])
    assert (steps[-1][0] - DAY).days < 200  # about 4 weeks + 4 months, not stalled


def _rux_at_15_mg() -> tuple[Protocol, PatientRecord]:
    from tests.conftest import ROOT, load_file

    rux = load_file(ROOT / "protocols" / "ruxolitinib-hes.yaml")
    record = PatientRecord(
        state="on_ruxolitinib",
        state_since=DAY - dt.timedelta(days=60),
        therapy_started_on=DAY - dt.timedelta(days=60),
        dose_since=DAY - dt.timedelta(days=30),
        memory={"dose": Fraction(15)},
    )
    return rux, record


def test_a_hold_that_certainly_applies_is_stated_though_a_rule_above_lacks_data() -> None:
    """ruxolitinib-hes, platelets 40 and no ANC: the ANC hold above cannot be decided, but
    either way no dose is given, so the platelet hold is stated, recorded, and says what to
    measure before any restart (a hold is never skipped because data is missing)."""
    rux, record = _rux_at_15_mg()
    decision, after = run(rux, record, {"platelets": "40 x10^9/L", "response": "partial"}, DAY)
    assert (decision.action, decision.doses) == ("hold", ())
    assert [rule.id for rule in decision.rules] == ["platelet-hold"]
    assert after.state == "hold_platelets"
    assert decision.warnings[0] == (
        "rule 'neutropenia-hold' could not be decided (needs ANC); the hold is stated all the "
        "same: ANC still to be measured or assessed before any dose"
    )


def test_a_dose_below_a_rule_that_lacks_data_is_not_given() -> None:
    """Platelets 90 with no ANC: the reduction to 10 mg would be a dose, and the ANC hold
    above it cannot be ruled out, so no dose is recommended."""
    rux, record = _rux_at_15_mg()
    decision, after = run(rux, record, {"platelets": "90 x10^9/L", "response": "partial"}, DAY)
    assert (decision.action, decision.doses) == ("refer", ())
    assert "rule 'neutropenia-hold' needs ANC" in decision.reasons[0]
    assert after.state == "on_ruxolitinib"


@pytest.mark.parametrize(
    ("platelets", "below_75", "below_100"),
    [("70 x10^9/L", 1, 1), ("90 x10^9/L", 0, 1), ("100 x10^9/L", 0, 0)],
)
def test_a_tracked_count_says_what_the_last_visit_showed(
    platelets: str, below_75: int, below_100: int
) -> None:
    """ruxolitinib-hes reduces on a fall into a band: the next visit knows the band the last
    one was in."""
    rux, record = _rux_at_15_mg()
    labs = {"platelets": platelets, "anc": "2 x10^9/L", "response": "partial"}
    _, after = run(rux, record, labs, DAY)
    assert after.memory["count_below_75_last_visit"] == below_75
    assert after.memory["count_below_100_last_visit"] == below_100


def test_a_tracked_count_is_kept_when_the_visit_does_not_show_it() -> None:
    rux, record = _rux_at_15_mg()
    record = attrs.evolve(
        record, memory={**record.memory, "count_below_100_last_visit": Fraction(1)}
    )
    _, after = run(rux, record, {"anc": "2 x10^9/L", "response": "partial"}, DAY)
    assert after.memory["count_below_100_last_visit"] == 1


def test_creatinine_clearance_uses_the_weight_entered_for_it() -> None:
    """clinical-facts leave the Cockcroft-Gault weight to the site: a weight entered for CrCl
    (ideal or adjusted) is used and named; otherwise the actual weight. ruxolitinib-hlh,
    NCT04551131: 'creatinine clearance (CrCl) <15 mL/min who are NOT receiving dialysis'."""
    from tests.conftest import ROOT, load_file

    hlh = load_file(ROOT / "protocols" / "ruxolitinib-hlh.yaml")
    adult = {"age": "20", "sex": "M", "weight": "100 kg", "height": "180 cm", "dialysis": "no"}
    labs = {**adult, "creatinine": "8 mg/dL"}
    entered, _ = run(hlh, PatientRecord(), {**labs, "crcl_weight": "60 kg"}, DAY)
    assert entered.action == "ineligible"
    assert (
        "CrCl 12.5 mL/min < 15 mL/min (margin 2.5 mL/min) [Cockcroft-Gault from age 20, "
        "weight for CrCl 60 kg, sex M, creatinine 8 mg/dL]"
    ) in entered.reasons
    actual, _ = run(hlh, PatientRecord(), labs, DAY)  # 120 x 100 / (72 x 8) = 20.8 mL/min
    assert actual.action != "ineligible"
    assert "ALT" in actual.reasons[0]  # now waits for the rest of the screening


def test_a_fall_seen_at_a_referred_visit_is_acted_on_at_the_next_decided_one() -> None:
    """Label table, platelets 50 to < 75: reduce to 5 mg bid. Platelets 70 at a visit referred
    for a missing ANC are not a 'fall already acted on': the next visit with an ANC reduces."""
    rux, record = _rux_at_15_mg()
    referred, record = run(rux, record, {"platelets": "70 x10^9/L", "response": "partial"}, DAY)
    assert referred.action == "refer"
    assert record.memory["count_below_75_last_visit"] == 0
    labs = {"platelets": "70 x10^9/L", "anc": "2 x10^9/L", "response": "partial"}
    decided, _ = run(rux, record, labs, DAY + dt.timedelta(days=1))
    assert (decided.action, [dose.short() for dose in decided.doses]) == ("decrease", ["5 mg bid"])


def test_two_values_for_one_draw_are_refused(imatinib: Protocol) -> None:
    """The engine never picks one of two different values of one draw."""
    observations = observe(imatinib, {**ADULT, **NORMAL})
    observations.append(read_observation(imatinib, "anc", "1.2 x10^9/L", DAY))
    with pytest.raises(EngineError, match="anc drawn 2026-01-05 was given as 4 x10"):
        step(imatinib, PatientRecord(), DAY, observations)


def test_the_same_value_twice_is_decided(imatinib: Protocol) -> None:
    """The same ANC in two units is one value."""
    observations = observe(imatinib, {**ADULT, **NORMAL})
    observations.append(read_observation(imatinib, "anc", "4000/mm3", DAY))
    decision, _ = step(imatinib, PatientRecord(), DAY, observations)
    assert decision.action == "start"


@pytest.mark.parametrize("field", ["therapy_started_on", "state_since", "dose_since"])
def test_a_course_date_after_the_visit_is_refused(imatinib: Protocol, field: str) -> None:
    """A therapy start, state-since or dose-since after the visit is no course to decide."""
    late = DAY + dt.timedelta(days=1)
    record = PatientRecord(
        state="dose_400",
        therapy_started_on=late if field == "therapy_started_on" else None,
        state_since=late if field == "state_since" else None,
        dose_since=late if field == "dose_since" else None,
    )
    with pytest.raises(EngineError, match="is after the visit"):
        step(imatinib, record, DAY, observe(imatinib, {**ADULT, **NORMAL}))


def test_refer_conflicting_keeps_no_value_of_the_name(imatinib: Protocol) -> None:
    """A conflicting visit refers, and the record keeps neither value nor the older one."""
    from dosing.engine.gathering import refer_conflicting

    _, record = step(imatinib, PatientRecord(), DAY, observe(imatinib, {**ADULT, **NORMAL}))
    later = DAY + dt.timedelta(days=7)
    observations = [
        *observe(imatinib, NORMAL, later),
        read_observation(imatinib, "anc", "0.5 x10^9/L", later),
    ]
    decision, after = refer_conflicting(imatinib, record, later, observations, "P1", ["two"])
    assert (decision.action, decision.doses, decision.warnings) == ("refer", (), ("two",))
    assert (after.state, after.memory) == (record.state, record.memory)
    assert "anc" not in after.observations
    assert after.observations["platelets"].drawn_on == later
