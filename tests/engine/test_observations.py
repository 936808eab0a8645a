"""Reading typed observations: exact values, and bad input explained, never guessed."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest

from dosing.core.errors import ObservationError
from dosing.engine.observations import read_observation
from dosing.protocol.model import Protocol

DAY = dt.date(2026, 1, 5)
COUNTS = "x10^9/L, 10^9/L, 10*9/L, G/L, 10^3/uL, K/uL, /mm3, /uL, cells/uL"


def read(protocol: Protocol, name: str, text: str, accept: bool = False) -> Fraction | str:
    return read_observation(protocol, name, text, DAY, accept).value


def test_anc_in_cells_per_mm3(imatinib: Protocol) -> None:
    """1200/mm3 is 1.2 x10^9/L."""
    assert read(imatinib, "anc", "1200/mm3") == Fraction(6, 5)


def test_loinc_code_is_an_alias(imatinib: Protocol) -> None:
    """751-8 is the ANC."""
    observation = read_observation(imatinib, "751-8", "1.2 K/uL", DAY)
    assert (observation.name, observation.value) == ("anc", Fraction(6, 5))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("anc", "1.2", f"anc=1.2: a number needs its unit; accepted: {COUNTS}"),
        (
            "anc",
            "1.2 mg/dL",
            "anc=1.2 mg/dL: mg/dL measures mass concentration, but anc is measured as count per "
            f"volume (x10^9/L); mg/dL cannot be converted to x10^9/L; accepted: {COUNTS}",
        ),
        (
            "anc",
            "lots",
            "anc=lots: 'lots' does not start with a number; expected a number and a unit "
            f"({COUNTS})",
        ),
        (
            "platelets",
            "5000 x10^9/L",
            "platelets=5000 x10^9/L: 5000 x10^9/L is outside the plausible range 0-3000 x10^9/L; "
            "check for a typo, or accept it knowingly (--accept-implausible)",
        ),
        ("bleeding", "maybe", "bleeding: 'maybe' is not an accepted answer; accepted: yes, no"),
    ],
)
def test_bad_values_are_explained(imatinib: Protocol, name: str, text: str, message: str) -> None:
    """Each bad value gets a message naming the lab, the value and what is accepted."""
    with pytest.raises(ObservationError) as caught:
        read(imatinib, name, text)
    assert str(caught.value) == message


def test_unknown_name_suggests_the_close_one(imatinib: Protocol) -> None:
    """A typo in a lab name gets a did-you-mean."""
    with pytest.raises(ObservationError, match=r"unknown observation 'anx' \(did you mean anc\?\)"):
        read(imatinib, "anx", "1.2 x10^9/L")


def test_implausible_value_accepted_knowingly(imatinib: Protocol) -> None:
    """With the flag, an out-of-range value is used as typed."""
    assert read(imatinib, "platelets", "5000 x10^9/L", accept=True) == 5000


def test_age_may_be_a_bare_number_of_years(imatinib: Protocol) -> None:
    """age=45 means 45 years; age=18 months is 1.5 years."""
    assert read(imatinib, "age", "45") == 45
    assert read(imatinib, "age", "18 months") == Fraction(3, 2)


@pytest.mark.parametrize(
    ("typed", "answer"), [("no", "no"), ("N", "no"), ("Yes", "yes"), ("y", "yes")]
)
def test_yes_no_answers(imatinib: Protocol, typed: str, answer: str) -> None:
    """Yes/no answers accept the usual spellings."""
    assert read(imatinib, "bleeding", typed) == answer


def test_unit_not_in_the_compiled_table_still_converts(imatinib: Protocol) -> None:
    """A valid spelling the protocol did not precompute falls back to pint, exactly."""
    assert read(imatinib, "anc", "1200 1/mm^3") == Fraction(6, 5)


def test_triglycerides_in_mmol_per_litre_are_read_in_their_own_measure() -> None:
    """HLH-2004 gives >= 3.0 mmol/L and >= 265 mg/dL, which do not agree exactly: a value in
    mmol/L is kept in mmol/L (as triglycerides_molar), never converted to mg/dL."""
    from tests.conftest import ROOT, load_file

    hlh = load_file(ROOT / "protocols" / "ruxolitinib-hlh.yaml")
    molar = read_observation(hlh, "triglycerides", "3.0 mmol/L", DAY)
    assert (molar.name, molar.value, molar.entered) == (
        "triglycerides_molar",
        Fraction(3),
        "3.0 mmol/L",
    )
    mass = read_observation(hlh, "triglycerides", "265 mg/dL", DAY)
    assert (mass.name, mass.value) == ("triglycerides", Fraction(265))
    with pytest.raises(ObservationError) as caught:
        read(hlh, "triglycerides", "3.0 kg")
    assert str(caught.value).startswith("triglycerides=3.0 kg: ")


def test_a_count_below_one_cell_per_microlitre_is_implausible(imatinib: Protocol) -> None:
    """Issue 10 item 2: a near-zero count is a misreading; 0 itself is a real result."""
    with pytest.raises(ObservationError) as caught:
        read(imatinib, "anc", "0.0005 x10^9/L")
    assert str(caught.value) == (
        "anc=0.0005 x10^9/L: 0.0005 x10^9/L is above 0 but below the smallest plausible value, "
        "0.001 x10^9/L; check for a typo, or accept it knowingly (--accept-implausible)"
    )
    assert read(imatinib, "anc", "0 x10^9/L") == 0
    assert read(imatinib, "anc", "1/mm3") == Fraction(1, 1000)


def test_a_lookalike_letter_in_a_name_is_named_with_its_code_point(imatinib: Protocol) -> None:
    """Issue 10 item 5: a Cyrillic a in 'anc' is named, with the name it resembles."""
    with pytest.raises(ObservationError) as caught:
        read(imatinib, "\u0430nc", "1.2 x10^9/L")
    assert str(caught.value).startswith(
        "unknown observation '\u0430nc': U+0430 CYRILLIC SMALL LETTER A looks like 'a' but is "
        "not that character: retype it (did you mean anc?); known: anc, platelets"
    )


def test_a_lookalike_letter_in_an_answer_is_named(imatinib: Protocol) -> None:
    """'no' typed with a Cyrillic o is not the answer no: refused, naming U+043E."""
    with pytest.raises(ObservationError) as caught:
        read(imatinib, "bleeding", "n\u043e")
    assert str(caught.value) == (
        "bleeding: 'n\u043e' is not an accepted answer: U+043E CYRILLIC SMALL LETTER O looks "
        "like 'o' but is not that character: retype it; accepted: yes, no"
    )
