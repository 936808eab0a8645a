"""The clinician's choice: the dose given against the advice, the strengths and the maximum."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest

from dosing.engine.choice import apply_choice, concerns, is_dose, matches
from dosing.engine.decision import Decision, DoseLine
from dosing.engine.patient import PatientRecord
from dosing.protocol.checks import makeable
from dosing.protocol.model import Action, Protocol

DAY = dt.date(2026, 1, 5)


def decision(action: Action, *amounts: int) -> Decision:
    doses = tuple(DoseLine("imatinib", Fraction(a), "mg", "qd") for a in amounts)
    return Decision(
        None, DAY, "imatinib-hes", "1", "x", "dose_400", action, doses, None, (), (), ()
    )


@pytest.mark.parametrize(
    ("given", "advice", "expected"),
    [
        ("400 mg qd", decision("continue", 400), True),
        ("imatinib 400 mg qd", decision("continue", 400), True),
        ("300 mg qd", decision("continue", 400), False),
        ("held", decision("hold"), True),
        ("300 mg qd", decision("refer"), None),
    ],
)
def test_matches(given: str, advice: Decision, expected: bool | None) -> None:
    """A dose given is the advice, is not, or cannot be compared (after a refer)."""
    assert matches(given, advice) is expected


def test_doses_the_prompt_reads() -> None:
    """AMOUNT mg FREQUENCY, with or without the drug; none; nothing else."""
    assert all(map(is_dose, ["300 mg qd", "imatinib 0.5 mg bid", "None"]))
    assert not any(map(is_dose, ["300 qd", "300 mg daily", "1e9 mg qd"]))


def test_a_dose_no_tablets_make_and_one_above_the_maximum(imatinib: Protocol) -> None:
    """350 mg is not made of 100 and 400 mg tablets; 800 mg qd is above 600 mg/day."""
    assert concerns(imatinib, "350 mg qd") == [
        "no combination of the imatinib strengths available (100 mg, 400 mg) makes 350 mg"
    ]
    assert concerns(imatinib, "800 mg qd") == [
        "800 mg qd is 800 mg/day, above the maximum of 600 mg/day of imatinib-hes"
    ]
    assert concerns(imatinib, "300 mg bid") == []
    assert concerns(imatinib, "none") == []


def test_makeable_is_exact_and_fast_for_any_amount() -> None:
    """Change-making over the strengths; a huge amount is answered at once (Schur's bound)."""
    tablets = (Fraction(100), Fraction(400))
    assert makeable(Fraction(500), tablets)
    assert not makeable(Fraction(350), tablets)
    assert makeable(Fraction(999_900), tablets)
    assert not makeable(Fraction(999_950), tablets)
    capsules = (Fraction(1, 2), Fraction(1), Fraction(5))
    assert makeable(Fraction(3, 2), capsules)
    assert not makeable(Fraction(3, 4), capsules)


def test_apply_choice_moves_the_course_to_the_dose_chosen(imatinib: Protocol) -> None:
    """300 mg qd chosen moves the patient to dose_300 from that day; 350 mg stays put."""
    record = PatientRecord(state="hold_heme")
    moved, note = apply_choice(imatinib, record, "300 mg qd", DAY)
    assert (moved.state, moved.dose_since, moved.state_since) == ("dose_300", DAY, DAY)
    assert note == "The next decision starts from state dose_300 (300 mg qd)."
    kept, note = apply_choice(imatinib, record, "350 mg qd", DAY)
    assert kept == record
    assert note.startswith("No state of imatinib-hes gives 350 mg qd")
