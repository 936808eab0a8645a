"""Reasons a clinician reads: no repeats, no noise, numbers as typed or to clinical
precision, durations in their own unit, and why the rules above the one that fired did not."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from fractions import Fraction

import pytest

import dosing.protocol.catalog as catalog
from dosing.engine.explain import clinical
from dosing.engine.observations import Observation, read_observation
from dosing.engine.patient import PatientRecord
from dosing.engine.step import step
from dosing.protocol.model import Protocol
from dosing.verify.scenarios import run_scenario

DAY = dt.date(2026, 3, 1)
NORMAL = {
    "anc": "3.2 x10^9/L", "platelets": "210 x10^9/L", "alt": "28 U/L", "ast": "30 U/L",
    "bilirubin": "12 umol/L", "sex": "F", "bleeding": "no", "eligibility_confirmed": "yes",
}  # fmt: skip


def observe(protocol: Protocol, values: dict[str, str]) -> list[Observation]:
    return [read_observation(protocol, name, text, DAY) for name, text in values.items()]


def test_a_start_at_400_says_why_the_reduced_start_did_not_apply(imatinib: Protocol) -> None:
    """Issue 15: a start at 400 mg showed only the age; now one line gives the values that
    kept every rule above it (the reduced start, the exclusions) from firing."""
    seen = observe(imatinib, {**NORMAL, "age": "50"})
    decision, _ = step(imatinib, PatientRecord(), DAY, seen)
    assert decision.action == "start"
    assert decision.reasons[-1] == (
        "Not met by the 7 rules above it: ALT 28 <= 100 U/L (2.5 x ALT ULN); AST 30 <= 100 U/L "
        "(2.5 x AST ULN); bilirubin 0.702 <= 3.6 mg/dL (3 x bilirubin ULN); ANC 3.2 >= 1.5 "
        "x10^9/L; platelets 210 >= 75 x10^9/L; clinical bleeding: no"
    )


def test_an_age_from_a_birth_date_reads_in_completed_years(imatinib: Protocol) -> None:
    """Issue 15: 'age 50.71 years (born 1975-06-15) (= 50.7132 years) ... (margin 32.7132
    years)' is now 'age 50 (born 1975-06-15) >= 18 years (margin 32 years)'."""
    age = Observation("age", Fraction(5071, 100), "50.71 years, born 1975-06-15", DAY)
    decision, _ = step(imatinib, PatientRecord(), DAY, [age, *observe(imatinib, NORMAL)])
    assert "age 50 (born 1975-06-15) >= 18 years (margin 32 years)" in decision.reasons


def test_a_converted_value_is_shown_to_clinical_precision(imatinib: Protocol) -> None:
    """12 umol/L of bilirubin is 0.7016 mg/dL: shown '0.702 mg/dL', the margin '2.9 mg/dL'."""
    record = PatientRecord(state="dose_400", therapy_started_on=DAY - dt.timedelta(days=7))
    decision, _ = step(imatinib, record, DAY, observe(imatinib, NORMAL))
    assert decision.reasons[1] == (
        "bilirubin 12 umol/L (= 0.702 mg/dL) not > 3 x bilirubin ULN 1.2 mg/dL, protocol "
        "default = 3.6 mg/dL (margin 2.9 mg/dL; 0.58 x)"
    )


def test_a_not_clause_lists_only_what_matters(imatinib: Protocol) -> None:
    """Issue 15: 'held from: dose_400, not dose_300 or dose_child or hold_heme or ...' and
    'clinical bleeding: no, not yes' lose their lists; counts say no margin."""
    record = PatientRecord(
        state="hold_heme",
        state_since=DAY - dt.timedelta(days=7),
        therapy_started_on=DAY - dt.timedelta(days=21),
        memory={"heme_holds": Fraction(1), "held_from": "dose_400"},
    )
    decision, _ = step(imatinib, record, DAY, observe(imatinib, {**NORMAL, "anc": "1.3 x10^9/L"}))
    assert "held from: dose_400" in decision.reasons
    assert not [reason for reason in decision.reasons if ", not dose_" in reason]
    assert "heme holds 1, not 2" in decision.reasons
    assert "ANC 1.3 x10^9/L not >= 1.5 x10^9/L (margin 0.2 x10^9/L)" in decision.reasons


def test_a_duration_reads_in_the_parameters_own_unit(imatinib: Protocol) -> None:
    """Issue 15: 'days at this dose 7 days not >= 30.4375 x taper interval 1 days' reads
    '... not >= taper interval 1 month (margin 24 days)': day 31 is the first day a month has
    passed."""
    record = PatientRecord(
        state="taper", state_since=DAY - dt.timedelta(days=7),
        therapy_started_on=DAY - dt.timedelta(days=200), dose_since=DAY - dt.timedelta(days=7),
        memory={"level": Fraction(300)},
    )  # fmt: skip
    values = {**NORMAL, "response": "complete", "relapse": "no", "life_threatening": "no"}
    decision, _ = step(imatinib, record, DAY, observe(imatinib, values))
    assert "days at this dose 7 days not >= taper interval 1 month (margin 24 days)" in (
        decision.reasons
    )


@pytest.mark.parametrize("protocol_id", catalog.shipped_ids())
def test_no_warning_or_reason_is_said_twice(protocol_id: str) -> None:
    """Issue 15: a stale-lab warning printed twice. Over every scenario visit of every shipped
    protocol, each warning and each reason appears once."""
    protocol = catalog.load(protocol_id)
    for scenario in protocol.scenarios:
        for result in run_scenario(protocol, scenario):
            for said in (result.decision.warnings, result.decision.reasons):
                assert [text for text, n in Counter(said).items() if n > 1] == [], scenario.name


@pytest.mark.parametrize(
    ("value", "threshold", "shown"),
    [
        ("0.7016", None, "0.702"), ("57.1234", None, "57.1"), ("1200", None, "1200"),
        ("1.5", None, "1.5"), ("1.4996", "1.5", "1.4996"), ("1.4996", "1.4998", "1.4996"),
        ("1.5004", "1.5", "1.5004"), ("2.8984", None, "2.9"), ("0.0004", None, "0.0004"),
    ],
)  # fmt: skip
def test_clinical_precision_never_moves_a_value_onto_its_threshold(
    value: str, threshold: str | None, shown: str
) -> None:
    """Three significant figures, unless that would show the value on (or across) the
    threshold it was compared with: 1.4996 against 1.5 is never '1.5'."""
    limit = Fraction(threshold) if threshold is not None else None
    assert clinical(Fraction(value), limit) == shown
