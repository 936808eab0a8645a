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
from decimal import Decimal
from fractions import Fraction
from functools import cache, lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from dosing.core import characters
from dosing.core.characters import first_foreign, shown
from dosing.core.errors import UnitError

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

# Other ways the clinic writes a known unit, and the known spelling each means.
_VARIANTS: dict[str, str] = {
    "K/mm3": "10^3/uL",
    "k/uL": "10^3/uL",
    "cells/mm3": "/mm3",
    "C": "°C",
    "lbs": "lb",
    "day": "days",
    "d": "days",
    "week": "weeks",
    "wk": "weeks",
    "month": "months",
    "year": "years",
    "yr": "years",
}

# Whole spellings that pint cannot read as they stand, mapped to what they mean.
_ALIASES: dict[str, str] = {
    "G/L": "10^9/L",
    "K/uL": "10^3/uL",
    "cells/uL": "1/uL",
    "°C": "degC",
}

# Spellings refused because two readings are common, with what to write instead.
_AMBIGUOUS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(x)?10[eE][0-9]"), "'10e9' reads as 10 x 10^9; write 10^9/L or x10^9/L"),
    (re.compile(r"^[KM]$"), "a lone K or M could be thousands, kelvin, mega or molar"),
    (re.compile(r"%"), "percent of what is not a unit; write mg/dL or a count"),
    (re.compile(r"^mM$|^uM$|^nM$"), "molar shorthand; write mmol/L, umol/L or nmol/L"),
)

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")
_UNIT_SIGNS = "µμ\u00d7°⁰¹²³⁴⁵⁶⁷⁸⁹⁻"
"""The only characters beyond ASCII a unit may hold."""
PER_MICROLITRE = frozenset({"/mm3", "/uL", "cells/uL"})
"""Counts typed in cells per microlitre: whole numbers, never a decimal part."""
MAX_DIGITS = 30
"""The longest number read (a measured value has a handful of digits; Python refuses to turn
more than 4,300 into an integer at all)."""

# A value: one decimal number (ASCII digits, an optional minus sign, an optional point with
# digits after it), then the unit. Everything the grammar leaves to the unit must be a known
# spelling, so nothing typed after the number can be multiplied in.
_VALUE = re.compile(r"(-?[0-9]+(?:\.[0-9]+)?)(\s*)(.*)", re.DOTALL)
_THOUSANDS = re.compile(r"([0-9]{3}(?:[^\S\n][0-9]{3})*)(?![0-9])(.*)", re.DOTALL)


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
    """Read a plain decimal number exactly ('0.5', '12'); anything else is refused."""
    number, unit = split_value(text)
    if unit:
        raise UnitError(f"'{shown(text)}' is not a plain number such as 0.5")
    return number


@lru_cache(maxsize=16_384)
def split_value(text: str) -> tuple[Fraction, str]:
    """Read '1.2 x10^9/L' or '1200/mm3' strictly: one exact number and the known spelling of
    its unit ('' if none). Raises UnitError naming what was not understood (a text refused is
    not remembered: it is read, and refused, again). Each distinct text is read once."""
    number, gap, unit = _parts(text)
    if len(number) > MAX_DIGITS + 2:
        digits = sum(char.isdigit() for char in number)
        raise UnitError(
            f"a number of {digits} digits is not a measurement; dosing reads at most "
            f"{MAX_DIGITS} digits"
        )
    if not unit:
        return _decimal(number), ""
    try:
        spelling = unit_spelling(unit)
    except UnitError as error:
        raise UnitError(_after_number(number, gap, unit, error)) from None
    if spelling in PER_MICROLITRE and "." in number:
        raise UnitError(_cells_with_a_point(number, spelling))
    return _decimal(number), spelling


def split_text(text: str) -> tuple[str, str]:
    """Split '1.2 x10^9/L' into the number as typed and the unit text ('' if none); the unit
    is not checked here."""
    number, _, unit = _parts(text)
    return number, unit


def _parts(text: str) -> tuple[str, str, str]:
    """The number, what separates it from the unit, and the unit text."""
    match = _VALUE.fullmatch(text.strip())
    if match is None:
        raise UnitError(_not_a_number(text))
    if "," in text:
        raise UnitError(
            f"'{shown(text)}' has a comma; write decimals with a point (1.2) and no thousands "
            "separator"
        )
    number, gap, unit = match.groups()
    return number, gap, unit


def _not_a_number(text: str) -> str:
    """Why `text` does not start with a number, as precisely as can be said."""
    stripped = text.strip()
    foreign = first_foreign(stripped[:2])
    if foreign is not None:
        return characters.foreign(stripped[foreign])
    if re.match(r"[.][0-9]", stripped):
        return f"'{shown(text)}' starts with a decimal point; write a 0 before it (0{stripped})"
    if re.match(r"[+][0-9]", stripped):
        return f"'{shown(text)}' has a plus sign; write the number without it"
    return f"'{shown(text)}' does not start with a number"


def _after_number(number: str, gap: str, unit: str, error: UnitError) -> str:
    """Why the text after a number is not a unit: a number split by a separator, text after a
    known unit, a character from another script, or simply an unknown unit."""
    apostrophe = unit[:1] in ("'", "\u2019")
    body = unit[1:] if apostrophe else unit
    thousands = (
        _THOUSANDS.fullmatch(body)
        if (apostrophe or gap) and re.fullmatch("[0-9]{1,3}", number)
        else None
    )
    if thousands is not None:
        digits, rest = thousands.groups()
        if apostrophe:
            where = "an apostrophe"
        elif gap.isascii():
            where = "a space"
        else:
            where = characters.describe(next(char for char in gap if not char.isascii()))
        written = number + re.sub(r"\s", "", digits) + rest
        return f"{where} inside the number (a thousands separator?): write {shown(written)}"
    foreign = first_foreign(unit, _UNIT_SIGNS)
    if foreign is not None:
        return f"unit '{shown(unit)}': {characters.foreign(unit[foreign])}"
    if re.match(r"10[*^]", unit):
        return str(error)  # a power of ten that is not a known one: 10^10^10/L, 10^9999/L
    if re.match(r"[.]([^0-9]|$)", unit):
        return f"'{shown(number + unit)}' has a decimal point with no digits after it"
    if re.match(r"[0-9.'\u2019]", unit):
        return (
            f"'{shown(unit)}' after the number {number} is not a unit (a number split by a space?)"
        )
    if re.match(r"[eE][+-]?[0-9]", unit):
        return (
            f"'{shown(unit)}' after the number {number} is not a unit: write powers of ten as "
            "x10^9/L"
        )
    for end in range(min(len(unit) - 1, 20), 0, -1):
        try:
            known = unit_spelling(unit[:end])
        except UnitError:
            continue
        return (
            f"'{shown(unit[end:])}' after the unit {known} is not understood: a value is one "
            "number and one unit"
        )
    return str(error)


def _cells_with_a_point(number: str, spelling: str) -> str:
    typed = f"{number}{spelling}" if spelling.startswith("/") else f"{number} {spelling}"
    per = spelling.removeprefix("/")
    if re.fullmatch(r"-?[0-9]+\.[0-9]{3}", number):
        whole = typed.replace(".", "", 1)
        return (
            f"'{typed}' is ambiguous: a count per {per} has no decimals, so the point may "
            f"separate thousands ({whole}); write the count without separators"
        )
    return (
        f"'{typed}': a count per {per} is a whole number of cells; write it without a decimal "
        "point, or in x10^9/L"
    )


def _decimal(text: str) -> Fraction:
    """A plain decimal ('-12.50') as an exact fraction; ~3x faster than Fraction(text)."""
    whole, _, digits = text.partition(".")
    if not digits:
        return Fraction(int(whole))
    negative = whole.startswith("-")
    magnitude = int(whole.lstrip("-") + digits)
    return Fraction(-magnitude if negative else magnitude, 10 ** len(digits))


def _normal(spelling: str) -> str:
    """The form a spelling is compared in: superscripts, micro signs, 'x10', '10*9' and
    '10^09', 'mm3' and 'mcg' all written one way. Never evaluated: only looked up."""
    text = re.sub(
        "[⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+", lambda m: "^" + m.group().translate(_SUPERSCRIPTS), spelling.strip()
    )
    text = text.replace("µ", "u").replace("μ", "u").replace("\u00d7", "x")
    text = re.sub(r"^[xX]\*?\s*(?=10)", "", text)  # x10^9/L, x 10^9/L -> 10^9/L
    text = re.sub(r"^10(?:\*\*|\*)(?=[0-9])", "10^", text)  # 10*9/L, 10**9/L -> 10^9/L
    # A leading zero in an exponent means nothing: 10^09/L is 10^9/L (never 10^0 x 9).
    text = re.sub(r"^10\^0+(?=[1-9])", "10^", text)
    text = re.sub(r"(?<=[A-Za-z])([23])(?![0-9^])", r"^\1", text)  # mm3 -> mm^3, m2 -> m^2
    text = text.replace("mcg", "ug")
    return text[1:] if text.startswith("1/") else text  # 1/mm^3 -> /mm^3


@cache
def _forms() -> tuple[dict[str, str], dict[str, str | None]]:
    """Every accepted form -> its known spelling; and case-folded forms -> the one spelling
    they fold from (None where two fold alike, as G/L and g/L do)."""
    forms: dict[str, str] = {}
    for spelling in (*KNOWN_SPELLINGS, *_VARIANTS):
        forms.setdefault(_normal(spelling), _VARIANTS.get(spelling, spelling))
    folded: dict[str, str | None] = {}
    for form, spelling in forms.items():
        key = form.casefold()
        if len(key) > 1:
            folded[key] = spelling if folded.get(key, spelling) == spelling else None
    return forms, folded


_KNOWN = frozenset(KNOWN_SPELLINGS)


@lru_cache(maxsize=1024)
def unit_spelling(typed: str) -> str:
    """The known spelling a typed unit means ('µg/L' -> 'µg/L', '10^09/L' -> '10^9/L',
    'mg/dl' -> 'mg/dL'), or UnitError. Text is matched against the known spellings, never
    evaluated, so no stray number, operator or exponent can reach pint."""
    text = typed.strip()
    if text in _KNOWN:
        return text
    if not text:
        raise UnitError("no unit given")
    foreign = first_foreign(text, _UNIT_SIGNS)
    if foreign is not None:
        raise UnitError(f"unit '{shown(typed)}': {characters.foreign(text[foreign])}")
    form = _normal(text)
    for pattern, why in _AMBIGUOUS:
        if pattern.search(form):
            raise UnitError(f"unit '{shown(typed)}' is ambiguous: {why}")
    forms, folded = _forms()
    if form in forms:
        return forms[form]
    key = form.casefold()
    if key in folded:
        spelling = folded[key]
        if spelling is None:
            alike = [known for known in forms.values() if _normal(known).casefold() == key]
            raise UnitError(
                f"unit '{shown(typed)}' is ambiguous: {' or '.join(dict.fromkeys(alike))}; "
                "write it with that case"
            )
        return spelling
    if re.search(r"\s", text):
        raise UnitError(f"unit '{shown(typed)}' has a space inside; write it without")
    raise UnitError(f"unit '{shown(typed)}' is not one dosing knows")


def normalize_spelling(spelling: str) -> str:
    """The pint expression of a known spelling ('G/L' -> '10^9/L', '/mm3' -> '1/mm^3')."""
    text = _normal(spelling)
    text = _ALIASES.get(spelling, text)
    if text.startswith("/"):
        text = "1" + text
    return text


@lru_cache(maxsize=1024)
def _scale_quantity(spelling: str) -> pint.Quantity[Fraction]:
    """The pint quantity of a spelling; only known spellings ever reach pint's parser."""
    import pint

    quantity = registry().parse_expression(normalize_spelling(unit_spelling(spelling)))
    assert isinstance(quantity, pint.Quantity), spelling
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


def _scaled(value: Fraction, places: int) -> int:
    """value x 10**places rounded half to even, as round() does a Fraction (without building
    one)."""
    numerator, denominator = value.numerator, value.denominator
    scaled: int
    scaled, remainder = divmod(numerator * 10**places, denominator)
    if remainder * 2 > denominator or (remainder * 2 == denominator and scaled % 2):
        scaled += 1
    return scaled


def rounded(value: Fraction, places: int) -> Fraction:
    """The value `format_number(value, places)` writes, exactly."""
    return Fraction(_scaled(value, places), 10**places)


def format_number(value: Fraction, places: int = 4) -> str:
    """A fraction as a short decimal: exact when it terminates within `places`, else rounded
    (half to even). Integer arithmetic only: this runs for every reason of every decision."""
    if value.denominator == 1:
        return str(value.numerator)
    scaled = _scaled(value, places)
    sign = "-" if scaled < 0 else ""
    whole, fraction = divmod(abs(scaled), 10**places)
    digits = str(fraction).rjust(places, "0").rstrip("0")
    text = f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"
    return "0" if text == "-0" else text
