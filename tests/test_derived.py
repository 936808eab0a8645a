"""Derived values: Mosteller BSA and Cockcroft-Gault CrCl."""

from __future__ import annotations

from fractions import Fraction

from dosing.derived import bsa_mosteller, crcl_cockcroft_gault
from dosing.units import conversion, format_number


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
