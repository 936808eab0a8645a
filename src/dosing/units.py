"""Clinical units: one pint registry, the spellings people type, and exact conversion.

Numbers are `Fraction`s from the moment they are read: a trough of 10 ng/mL is exactly
10 ug/L, and a value on a threshold lands on the side the protocol says. Pint resolves each
unit spelling once (cached) into an exact affine map to the canonical unit; hot paths then
compute on plain fractions. The registry is built on first use, so a compiled protocol whose
spellings are already resolved never needs pint at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from dosing.errors import UnitError

if TYPE_CHECKING:
    import pint


@cache
def registry() -> pint.UnitRegistry[Fraction]:
    """The package's one pint registry: clinical units only, exact (Fraction) magnitudes."""
    import pint

    return pint.UnitRegistry(
        str(Path(__file__).with_name("clinical_units.txt")),
        non_int_type=Fraction,
        cache_folder=None,
        autoconvert_offset_to_baseunit=True,
    )


# Spellings the clinic uses, in the order an error message lists them. Each is resolved by
# `conversion`, so a lab's accepted units are exactly those that convert to its canonical unit.
KNOWN_SPELLINGS: tuple[str, ...] = (
    "x10^9/L", "10^9/L", "10*9/L", "G/L", "10^3/uL", "K/uL", "/mm3", "/uL", "cells/uL",
    "U/L", "IU/L", "U/mL",
    "ng/mL", "ug/L", "µg/L", "pg/mL", "nmol/L",
    "mg/dL", "umol/L", "µmol/L", "g/dL", "g/L", "mg/L", "mmol/L",
    "mL/min", "degC", "°C", "kg", "lb", "cm", "m", "in", "m^2", "mg", "mg/m^2",
    "years", "months", "weeks", "days",
)  # fmt: skip

# Whole spellings that pint cannot read as they stand, mapped to what they mean.
_ALIASES: dict[str, str] = {
    "G/L": "10^9/L",
    "K/uL": "10^3/uL",
    "k/uL": "10^3/uL",
    "K/mm^3": "10^3/mm^3",
    "cells/uL": "1/uL",
    "cells/mm^3": "1/mm^3",
    "°C": "degC",
    "C": "degC",
}

# Spellings refused because two readings are common, with what to write instead.
_AMBIGUOUS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(x)?10[eE]\d"), "'10e9' reads as 10 x 10^9; write 10^9/L or x10^9/L"),
    (re.compile(r"^[KM]$"), "a lone K or M could be thousands, kelvin, mega or molar"),
    (re.compile(r"%"), "percent of what is not a unit; write mg/dL or a count"),
    (re.compile(r"^mM$|^uM$|^nM$"), "molar shorthand; write mmol/L, umol/L or nmol/L"),
)

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_NUMBER = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(.*?)\s*$", re.DOTALL)


@attrs.frozen
class Conversion:
    """An exact affine map from a unit spelling to a canonical unit: value * scale + offset."""

    scale: Fraction
    offset: Fraction = Fraction(0)

    def apply(self, value: Fraction) -> Fraction:
        """The value, in the canonical unit."""
        if self.offset:
            return value * self.scale + self.offset
        return value if self.scale == 1 else value * self.scale

    def invert(self, value: Fraction) -> Fraction:
        """A canonical value, back in the spelling's unit."""
        return (value - self.offset) / self.scale


def parse_number(text: str) -> Fraction:
    """Read a decimal number exactly; refuse commas, which are ambiguous (1,200 or 1.2?)."""
    cleaned = text.strip()
    if "," in cleaned:
        raise UnitError(
            f"'{text}' has a comma; write decimals with a point (1.2) and no thousands separator"
        )
    try:
        return Fraction(Decimal(cleaned))
    except (InvalidOperation, ValueError):
        raise UnitError(f"'{text}' is not a number") from None


def split_value(text: str) -> tuple[Fraction, str]:
    """Split '1.2 x10^9/L' or '1200/mm3' into an exact number and the unit text ('' if none)."""
    number, unit = split_text(text)
    return _decimal(number), unit


def split_text(text: str) -> tuple[str, str]:
    """Split '1.2 x10^9/L' into the number as typed and the unit text ('' if none)."""
    match = _NUMBER.match(text)
    if match is None:
        raise UnitError(f"'{text}' does not start with a number")
    number, unit = match.groups()
    if unit.startswith(","):
        raise UnitError(
            f"'{text}' has a comma; write decimals with a point (1.2) and no thousands separator"
        )
    return number, unit


def _decimal(text: str) -> Fraction:
    """A plain decimal ('-12.50', '.5') as an exact fraction; ~3x faster than Fraction(text)."""
    whole, _, digits = text.partition(".")
    if not digits:
        return Fraction(int(whole or "0"))
    negative = whole.startswith("-")
    magnitude = int((whole.lstrip("+-") or "0") + digits)
    return Fraction(-magnitude if negative else magnitude, 10 ** len(digits))


def normalize_spelling(spelling: str) -> str:
    """Turn a clinic spelling into a pint expression, or refuse it as ambiguous."""
    text = re.sub(
        "[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+", lambda m: "^" + m.group().translate(_SUPERSCRIPTS), spelling.strip()
    )
    text = text.replace("µ", "u").replace("μ", "u").replace("\u00d7", "x").replace(" ", "")
    for pattern, why in _AMBIGUOUS:
        if pattern.search(text):
            raise UnitError(f"unit '{spelling}' is ambiguous: {why}")
    text = re.sub(r"^[xX]\*?(?=10)", "", text)  # x10^9/L -> 10^9/L
    text = re.sub(r"^10(?:\*\*|\*)(\d)", r"10^\1", text)  # 10*9/L, 10**9/L -> 10^9/L
    text = re.sub(r"(?<=[A-Za-z])([23])(?![\d^])", r"^\1", text)  # mm3 -> mm^3, m2 -> m^2
    text = text.replace("mcg", "ug")
    text = _ALIASES.get(text, text)
    if text.startswith("/"):
        text = "1" + text
    return text


@lru_cache(maxsize=1024)
def _scale_quantity(spelling: str) -> pint.Quantity[Fraction]:
    import pint

    expression = normalize_spelling(spelling)
    if not expression:
        raise UnitError("no unit given")
    try:
        quantity = registry().parse_expression(expression)
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError):
        raise UnitError(f"unit '{spelling}' is not one dosing knows") from None
    except Exception:  # pint's tokenizer raises plain errors on garbage such as '10^/'
        raise UnitError(f"unit '{spelling}' is not a unit dosing can read") from None
    if not isinstance(quantity, pint.Quantity):
        raise UnitError(f"'{spelling}' is a number, not a unit")
    return quantity


def kind_of(spelling: str) -> str:
    """What a unit measures, in words (used in messages)."""
    return _describe(_scale_quantity(spelling).dimensionality)


def _describe(dimensionality: Mapping[str, Any]) -> str:
    names = {
        (("[length]", -3),): "count per volume",
        (("[length]", -3), ("[mass]", 1)): "mass concentration",
        (("[length]", -3), ("[substance]", 1)): "molar concentration",
        (("[activity]", 1), ("[length]", -3)): "activity per volume",
        (("[length]", 3), ("[time]", -1)): "flow rate",
        (("[mass]", 1),): "mass",
        (("[length]", 1),): "length",
        (("[length]", 2),): "area",
        (("[length]", -2), ("[mass]", 1)): "mass per area",
        (("[time]", 1),): "time",
        (("[temperature]", 1),): "temperature",
        (): "plain number",
    }
    key = tuple(sorted((k, int(v)) for k, v in dimensionality.items() if v))
    return names.get(key, "other")


@lru_cache(maxsize=4096)
def conversion(
    spelling: str, canonical: str, analyte: str, molar_mass: str | None = None
) -> Conversion:
    """The exact map from `spelling` to `canonical` for `analyte`.

    Mass <-> molar conversion happens only when the analyte's molar mass (g/mol) is known;
    anything else of another kind is refused with a message naming the analyte.
    """
    source = _scale_quantity(spelling)
    target = _scale_quantity(canonical)
    Q_ = registry().Quantity
    if source.dimensionality == target.dimensionality:
        zero = Q_(Fraction(0) * source.magnitude, source.units).to(target.units).magnitude
        one = Q_(source.magnitude, source.units).to(target.units).magnitude
        return Conversion(scale=(one - zero) / target.magnitude, offset=zero / target.magnitude)
    kinds = {_describe(source.dimensionality), _describe(target.dimensionality)}
    if kinds == {"mass concentration", "molar concentration"}:
        if molar_mass is None:
            raise UnitError(
                f"{spelling} cannot be converted to {canonical}: dosing knows no "
                f"molar mass for {analyte}, so its mass and molar units are not interchangeable"
            )
        mw = Q_(Fraction(Decimal(molar_mass)), "g/mol")
        converted = source.to(target.units, "chemistry", mw=mw).magnitude
        return Conversion(scale=converted / target.magnitude)
    raise UnitError(
        f"{spelling} measures {kind_of(spelling)}, but {analyte} is measured as "
        f"{kind_of(canonical)} ({canonical}); {spelling} cannot be converted to {canonical}"
    )


@lru_cache(maxsize=256)
def accepted_spellings(canonical: str, molar_mass: str | None = None) -> tuple[str, ...]:
    """Every known spelling that converts to `canonical` (with the molar mass, if any)."""
    accepted = []
    for spelling in KNOWN_SPELLINGS:
        try:
            conversion(spelling, canonical, "?", molar_mass)
        except UnitError:
            continue
        accepted.append(spelling)
    return tuple(accepted)


def format_number(value: Fraction, places: int = 4) -> str:
    """A fraction as a short decimal: exact when it terminates within `places`, else rounded
    (half to even). Integer arithmetic only: this runs for every reason of every decision."""
    if value.denominator == 1:
        return str(value.numerator)
    scaled = round(value * 10**places)
    sign = "-" if scaled < 0 else ""
    whole, fraction = divmod(abs(scaled), 10**places)
    digits = str(fraction).rjust(places, "0").rstrip("0")
    text = f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"
    return "0" if text == "-0" else text
