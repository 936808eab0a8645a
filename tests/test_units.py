"""Units: the spellings people type, exact conversion, and what is refused."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import pytest

from dosing.errors import UnitError
from dosing.units import (
    accepted_spellings,
    conversion,
    format_number,
    normalize_spelling,
    parse_number,
    split_value,
)

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
        "import sys, dosing.units as u; assert 'pint' not in sys.modules;"
        "u.conversion('mg/dL', 'g/L', 'x'); assert 'pint' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
