"""Units: the spellings people type, exact conversion, and what is refused."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dosing.core.errors import UnitError
from dosing.core.units import (
    accepted_spellings,
    conversion,
    format_number,
    normalize_spelling,
    parse_number,
    rounded,
    split_value,
)
from tests.conftest import time_limit

ANC_1_2 = [
    "1.2x10^9/L",
    "1.2 x10^9/L",
    "1.2 10^9/L",
    "1.2 10*9/L",
    "1.2 G/L",
    "1.2 10^3/uL",
    "1.2 K/uL",
    "1200/mm3",
    "1200 /uL",
    "1200 cells/uL",
    "1200/µL",
    "1.2 \u00d710\u2079/L",  # the multiplication sign and a superscript nine
]


@pytest.mark.parametrize("typed", ANC_1_2)
def test_count_spellings_read_exactly(typed: str) -> None:
    """Every clinic spelling of 1.2 x10^9/L reads as exactly 6/5 in the canonical unit."""
    number, unit = split_value(typed)
    assert conversion(unit, "x10^9/L", "anc").apply(number) == Fraction(6, 5)


def test_trough_on_threshold_is_exact_across_units() -> None:
    """10 ng/mL is exactly 10 ug/L: pint's float result (10.000000000000002) would fail <= 10."""
    value = conversion("ng/mL", "ug/L", "tacrolimus").apply(Fraction(10))
    assert value == 10
    assert value <= conversion("µg/L", "ug/L", "tacrolimus").apply(Fraction(10))


@pytest.mark.parametrize(
    ("typed", "ng_per_ml"),
    [("12.43 nmol/L", "9.99"), ("12.45 nmol/L", "10.01")],
)
def test_tacrolimus_molar_conversion_uses_its_molar_mass(typed: str, ng_per_ml: str) -> None:
    """nmol/L converts to ng/mL through tacrolimus's 804.02 g/mol, exactly."""
    number, unit = split_value(typed)
    value = conversion(unit, "ng/mL", "tacrolimus", "804.02").apply(number)
    assert format_number(value, 2) == ng_per_ml
    assert value == number * Fraction("804.02") / 1000


def test_creatinine_and_bilirubin_factors() -> None:
    """1 mg/dL creatinine is 88.4 umol/L; 1 mg/dL bilirubin is 17.1 umol/L (clinical-facts)."""
    creatinine = conversion("mg/dL", "umol/L", "creatinine", "113.12").scale
    bilirubin = conversion("mg/dL", "µmol/L", "bilirubin", "584.66").scale
    assert format_number(creatinine, 1) == "88.4"
    assert format_number(bilirubin, 1) == "17.1"


def test_mass_and_molar_refused_without_a_molar_mass() -> None:
    """Triglycerides have no molar mass here, so mmol/L and mg/dL are not interchangeable."""
    with pytest.raises(UnitError, match="dosing knows no molar mass for triglycerides"):
        conversion("mg/dL", "mmol/L", "triglycerides")


def test_sil2r_assays_are_not_converted() -> None:
    """sIL-2R in pg/mL is a different assay from U/mL: refused, naming the analyte."""
    with pytest.raises(UnitError) as caught:
        conversion("pg/mL", "U/mL", "sIL-2R")
    assert str(caught.value) == (
        "pg/mL measures mass concentration, but sIL-2R is measured as activity per volume "
        "(U/mL); pg/mL cannot be converted to U/mL"
    )


def test_wrong_kind_is_refused() -> None:
    """An ANC in mg/dL is refused with both kinds named."""
    with pytest.raises(UnitError, match="mg/dL measures mass concentration, but anc is"):
        conversion("mg/dL", "x10^9/L", "anc")


@pytest.mark.parametrize(
    ("spelling", "message"),
    [
        ("10e9/L", "unit '10e9/L' is ambiguous: '10e9' reads as 10 x 10^9"),
        ("K", "unit 'K' is ambiguous"),
        ("mg%", "unit 'mg%' is ambiguous"),
        ("mM", "unit 'mM' is ambiguous: molar shorthand"),
        ("furlongs", "unit 'furlongs' is not one dosing knows"),
    ],
)
def test_ambiguous_and_unknown_spellings(spelling: str, message: str) -> None:
    """Ambiguous spellings are refused with what to write instead."""
    with pytest.raises(UnitError, match=message.replace("^", r"\^")):
        conversion(spelling, "x10^9/L", "anc")


def test_ages_in_months_are_exact() -> None:
    """24 months is exactly 2 years (a Julian year), so age thresholds hold in either unit."""
    assert conversion("months", "years", "age").apply(Fraction(24)) == 2


def test_numbers_are_exact_and_commas_refused() -> None:
    """'1.1' is 11/10, not a float; '1,2' could be 1.2 or 12, so it is refused."""
    assert parse_number("1.1") == Fraction(11, 10)
    with pytest.raises(UnitError, match="has a comma"):
        split_value("1,2 K/uL")


def test_accepted_units_follow_from_conversion() -> None:
    """The accepted list for ANC is every known count spelling and nothing else."""
    assert accepted_spellings("x10^9/L") == (
        "x10^9/L", "10^9/L", "10*9/L", "G/L", "10^3/uL", "K/uL", "/mm3", "/uL", "cells/uL",
    )  # fmt: skip


def test_normalize_keeps_case_that_matters() -> None:
    """g/L is grams per litre; G/L is 10^9 per litre."""
    assert normalize_spelling("G/L") == "10^9/L"
    assert normalize_spelling("g/L") == "g/L"


def test_registry_is_built_only_when_needed() -> None:
    """Importing the unit layer does not import pint; the first conversion does."""
    code = (
        "import sys, dosing.core.units as u; assert 'pint' not in sys.modules;"
        "u.conversion('mg/dL', 'g/L', 'x'); assert 'pint' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# Issue 10: a value is one decimal number and one known unit; anything else is refused.
MISREAD = [
    ("8 .5 ng/mL", "'.5 ng/mL' after the number 8 is not a unit (a number split by a space?)"),
    ("1 500/mm3", "a space inside the number (a thousands separator?): write 1500/mm3"),
    ("150 000/mm3", "a space inside the number (a thousands separator?): write 150000/mm3"),
    (
        "1\u00a0500/mm3",
        "U+00A0 NO-BREAK SPACE inside the number (a thousands separator?): write 1500/mm3",
    ),
    (
        "1\u202f500/mm3",
        "U+202F NARROW NO-BREAK SPACE inside the number (a thousands separator?): write 1500/mm3",
    ),
    ("1'200/mm3", "an apostrophe inside the number (a thousands separator?): write 1200/mm3"),
    ("1200 2/mm3", "'2/mm3' after the number 1200 is not a unit (a number split by a space?)"),
    (
        "1.2 x10^9/L*2",
        "'*2' after the unit x10^9/L is not understood: a value is one number and one unit",
    ),
    (
        "12 ng/mL/2",
        "'/2' after the unit ng/mL is not understood: a value is one number and one unit",
    ),
    (
        "8.5 ng/mL;0.5",
        "';0.5' after the unit ng/mL is not understood: a value is one number and one unit",
    ),
]


@pytest.mark.parametrize(("typed", "message"), MISREAD, ids=[typed for typed, _ in MISREAD])
def test_text_after_the_number_is_refused_not_multiplied(typed: str, message: str) -> None:
    """Issue 10 item 1: '8 .5 ng/mL' was read as 8 x 0.5 = 4; now each is refused, saying why."""
    with pytest.raises(UnitError) as caught:
        split_value(typed)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (
            "1.500/mm3",
            "'1.500/mm3' is ambiguous: a count per mm3 has no decimals, so the point may "
            "separate thousands (1500/mm3); write the count without separators",
        ),
        (
            "150.000/mm3",
            "'150.000/mm3' is ambiguous: a count per mm3 has no decimals, so the point may "
            "separate thousands (150000/mm3); write the count without separators",
        ),
        (
            "1.500 /uL",
            "'1.500/uL' is ambiguous: a count per uL has no decimals, so the point may "
            "separate thousands (1500/uL); write the count without separators",
        ),
        (
            "1.5/mm3",
            "'1.5/mm3': a count per mm3 is a whole number of cells; write it without a decimal "
            "point, or in x10^9/L",
        ),
    ],
)
def test_a_dot_in_a_count_per_microlitre_is_refused(typed: str, message: str) -> None:
    """Issue 10 item 2: 1.500/mm3 was read as 0.0015 x10^9/L; a dot may separate thousands."""
    with pytest.raises(UnitError) as caught:
        split_value(typed)
    assert str(caught.value) == message


def test_a_dot_is_a_decimal_point_in_other_count_units() -> None:
    """1.500 x10^9/L and 1.500 K/uL are unambiguous: exactly 1.5 x10^9/L."""
    for typed in ("1.500 x10^9/L", "1.500 K/uL"):
        number, unit = split_value(typed)
        assert conversion(unit, "x10^9/L", "anc").apply(number) == Fraction(3, 2)


@pytest.mark.parametrize("typed", ["1.2 x10^09/L", "1.2 10^09/L", "1.2 10^009/L"])
def test_a_leading_zero_in_an_exponent_means_nothing(typed: str) -> None:
    """Issue 10 item 3: 10^09/L was read as about 1e-8; it is 10^9/L."""
    number, unit = split_value(typed)
    assert unit in ("x10^9/L", "10^9/L")
    assert conversion(unit, "x10^9/L", "anc").apply(number) == Fraction(6, 5)


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (
            "\u0661\u0662\u0660\u0660/mm3",  # 1200 in Arabic-Indic digits
            "U+0661 ARABIC-INDIC DIGIT ONE is not a digit dosing reads: type the digits 0-9",
        ),
        (
            "\uff11\uff12\uff10\uff10/mm3",  # 1200 in fullwidth digits
            "U+FF11 FULLWIDTH DIGIT ONE is not a digit dosing reads: type the digits 0-9",
        ),
        (
            "1\u066200/mm3",  # mixed scripts
            "unit '\u066200/mm3': U+0662 ARABIC-INDIC DIGIT TWO is not a digit dosing reads: "
            "type the digits 0-9",
        ),
        (
            "1.2 \u044510^9/L",  # a Cyrillic ha for the x
            "unit '\u044510^9/L': U+0445 CYRILLIC SMALL LETTER HA looks like 'x' but is not "
            "that character: retype it",
        ),
    ],
)
def test_digits_and_letters_of_other_scripts_are_named(typed: str, message: str) -> None:
    """Issue 10 item 5: 1200 in Arabic-Indic or fullwidth digits was read; now refused."""
    with pytest.raises(UnitError) as caught:
        split_value(typed)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("1.2 10^10^10/L", "unit '10^10^10/L' is not one dosing knows"),
        ("1 10^9999999/L", "unit '10^9999999/L' is not one dosing knows"),
    ],
)
def test_huge_exponents_are_refused_at_once(typed: str, message: str) -> None:
    """Issue 10 item 13: the unit 10^10^10 hung and 10^9999999 took 8 s in pint."""
    with time_limit(2), pytest.raises(UnitError) as caught:
        split_value(typed)
    assert str(caught.value) == message


def test_a_number_of_thousands_of_digits_is_refused() -> None:
    """Issue 10 item 14: a value over 4,300 digits crashed int(); now a message."""
    with pytest.raises(UnitError) as caught:
        split_value("1" * 5000 + " U/L")
    assert str(caught.value) == (
        "a number of 5000 digits is not a measurement; dosing reads at most 30 digits"
    )


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        (".5 ng/mL", "'.5 ng/mL' starts with a decimal point; write a 0 before it (0.5 ng/mL)"),
        ("+8 ng/mL", "'+8 ng/mL' has a plus sign; write the number without it"),
        ("8. ng/mL", "'8. ng/mL' has a decimal point with no digits after it"),
        ("1.2e9/L", "'e9/L' after the number 1.2 is not a unit: write powers of ten as x10^9/L"),
        ("8.5 ng / mL", "unit 'ng / mL' has a space inside; write it without"),
        ("1.2 g/l", "unit 'g/l' is ambiguous: G/L or g/L; write it with that case"),
    ],
)
def test_the_number_grammar_is_strict(typed: str, message: str) -> None:
    """No naked decimal point (.5 is misread as 5), no sign, exponent or spaced-out unit."""
    with pytest.raises(UnitError) as caught:
        split_value(typed)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("typed", "spelling"),
    [
        ("8.5 ng/mL", "ng/mL"),
        ("8.5 ng/ml", "ng/mL"),
        ("0.7 MG/DL", "mg/dL"),
        ("1.2 x 10^9/L", "x10^9/L"),
        ("1.2 \u00d710\u2079/L", "x10^9/L"),  # a multiplication sign, a superscript 9
        ("1200 cells/mm3", "/mm3"),
        ("-3 U/L", "U/L"),
        ("7 day", "days"),
    ],
)
def test_known_units_in_their_usual_variants(typed: str, spelling: str) -> None:
    """Case, micro signs, superscripts and 'x 10' are written many ways; each means one unit."""
    assert split_value(typed)[1] == spelling


@given(
    st.fractions(max_denominator=10**6) | st.integers(-(10**12), 10**12).map(Fraction),
    st.integers(0, 8),
)
def test_format_number_rounds_as_round_does_a_fraction(value: Fraction, places: int) -> None:
    """format_number rounds in integers, half to even, exactly as round(value * 10**places)."""
    scaled = round(value * 10**places)
    whole, fraction = divmod(abs(scaled), 10**places)
    digits = str(fraction).rjust(places, "0").rstrip("0")
    sign = "-" if scaled < 0 else ""
    text = f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"
    expected = str(value.numerator) if value.denominator == 1 else text
    assert format_number(value, places) == ("0" if expected == "-0" else expected)


@pytest.mark.parametrize(
    ("value", "places", "shown"),
    [
        (Fraction(1, 8), 2, "0.12"),  # 12.5: to the even 12
        (Fraction(3, 8), 2, "0.38"),  # 37.5: to the even 38
        (Fraction(-1, 8), 2, "-0.12"),
        (Fraction(-3, 8), 2, "-0.38"),
        (Fraction(1, 200), 2, "0"),
        (Fraction(-1, 200), 2, "0"),  # -0 is shown as 0
        (Fraction(2, 3), 4, "0.6667"),
        (Fraction(-7, 2), 0, "-4"),
    ],
)
def test_format_number_ties_go_to_even(value: Fraction, places: int, shown: str) -> None:
    assert format_number(value, places) == shown


@given(
    st.fractions(max_denominator=10**6) | st.integers(-(10**12), 10**12).map(Fraction),
    st.integers(0, 8),
)
def test_rounded_is_the_value_format_number_writes(value: Fraction, places: int) -> None:
    """The explanation compares the value it shows with the threshold: `rounded` is exactly
    the number `format_number` writes, without reading the text back."""
    assert rounded(value, places) == Fraction(format_number(value, places))
    assert rounded(value, places) == Fraction(round(value * 10**places), 10**places)
