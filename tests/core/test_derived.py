"""Derived values: Mosteller BSA and Cockcroft-Gault CrCl."""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction

from dosing.core.derived import bsa_mosteller, crcl_cockcroft_gault
from dosing.core.units import conversion, format_number


def test_mosteller() -> None:
    """170 cm and 70 kg give sqrt(170 x 70 / 3600) = 1.818 m²."""
    assert format_number(bsa_mosteller(Fraction(170), Fraction(70)), 3) == "1.818"


def test_cockcroft_gault_from_umol_per_litre() -> None:
    """Creatinine 106 umol/L, 70 years, 60 kg, male: about 48.6 mL/min."""
    creatinine = conversion("umol/L", "mg/dL", "creatinine", "113.12").apply(Fraction(106))
    crcl = crcl_cockcroft_gault(Fraction(70), Fraction(60), False, creatinine)
    assert format_number(crcl, 1) == "48.6"


def test_cockcroft_gault_female_factor() -> None:
    """A woman's clearance is 0.85 of a man's, exactly."""
    male = crcl_cockcroft_gault(Fraction(50), Fraction(70), False, Fraction(1))
    female = crcl_cockcroft_gault(Fraction(50), Fraction(70), True, Fraction(1))
    assert female == male * Fraction(85, 100)
    assert male == Fraction(90 * 70, 72)


def test_an_age_turns_on_the_birthday_itself() -> None:
    """Born 1975-06-01: 17 completed years the day before the 18th birthday, 18 on it."""
    from dosing.core.derived import age_on

    born = dt.date(1975, 6, 1)
    assert math.floor(age_on(born, dt.date(1993, 5, 31))) == 17
    assert age_on(born, dt.date(1993, 6, 1)) == 18


def test_a_29_february_birthday_falls_on_1_march() -> None:
    """Born 2008-02-29: still 17 on 2026-02-28, 18 on 2026-03-01."""
    from dosing.core.derived import age_on

    born = dt.date(2008, 2, 29)
    assert math.floor(age_on(born, dt.date(2026, 2, 28))) == 17
    assert age_on(born, dt.date(2026, 3, 1)) == 18


def test_in_the_first_year_an_age_is_exact_in_days() -> None:
    """42 days old is exactly 6 weeks, as the unit layer counts them."""
    from dosing.core.derived import age_on

    six_weeks = conversion("weeks", "years", "age").apply(Fraction(6))
    assert age_on(dt.date(2026, 1, 1), dt.date(2026, 2, 12)) == six_weeks
