"""Values derived from patient facts and labs: BSA (Mosteller) and CrCl (Cockcroft-Gault)."""

from __future__ import annotations

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
