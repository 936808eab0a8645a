"""Values derived from patient facts and labs: age from a birth date, BSA (Mosteller) and CrCl
(Cockcroft-Gault)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, localcontext
from fractions import Fraction


def bsa_mosteller(height_cm: Fraction, weight_kg: Fraction) -> Fraction:
    """Body surface area in m²: sqrt(height cm x weight kg / 3600) [clinical-facts: Formulas]."""
    product = height_cm * weight_kg / 3600
    with localcontext() as context:
        context.prec = 30
        root = (Decimal(product.numerator) / Decimal(product.denominator)).sqrt()
    return Fraction(root)


def crcl_cockcroft_gault(
    age_years: Fraction, weight_kg: Fraction, female: bool, creatinine_mg_dl: Fraction
) -> Fraction:
    """CrCl in mL/min: (140 - age) x weight / (72 x creatinine), x 0.85 if female."""
    clearance = (140 - age_years) * weight_kg / (72 * creatinine_mg_dl)
    return clearance * Fraction(85, 100) if female else clearance


def age_on(birth: dt.date, date: dt.date) -> Fraction:
    """Age in years on `date`: the completed years by the calendar (so a threshold in years
    turns on the birthday itself), plus the share of the current year of life. In the first
    year the age is exact in days (days / 365.25, as the unit layer counts years), so that
    thresholds in weeks or days compare exactly. A 29 February birthday falls on 1 March in
    other years."""
    years = date.year - birth.year - ((date.month, date.day) < (birth.month, birth.day))
    if years <= 0:
        return Fraction((date - birth).days * 4, 1461)
    last, following = _birthday(birth, birth.year + years), _birthday(birth, birth.year + years + 1)
    return years + Fraction((date - last).days, (following - last).days)


def _birthday(birth: dt.date, year: int) -> dt.date:
    try:
        return birth.replace(year=year)
    except ValueError:  # 29 February in a year without one
        return dt.date(year, 3, 1)
