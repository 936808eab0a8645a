"""Findings in words: which value, which threshold, and how far apart they were."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

from dosing.errors import UnitError
from dosing.guards import Comparison, CountType, Finding, NameType, QuantityType, Tally, Value
from dosing.units import format_number, split_value


def _label(name: str, scope: Mapping[str, NameType]) -> str:
    kind = scope.get(name)
    return kind.label if kind is not None else name


def _amount(value: Fraction, unit: str) -> str:
    return f"{format_number(value)} {unit}".strip()


def describe(
    finding: Finding,
    scope: Mapping[str, NameType],
    entered: Mapping[str, str],
    defaults_used: frozenset[str] = frozenset(),
) -> str:
    """'ANC 1200/mm3 (= 1.2 x10^9/L) < 1.5 x10^9/L (margin 0.3 x10^9/L)'."""
    atom = finding.atom
    if isinstance(atom, Tally):
        met = format_number(_number(finding.value))
        op = atom.op if finding.holds else f"not {atom.op}"
        return (
            f"{met} of {len(atom.items)} criteria met, {op} {format_number(atom.threshold)}"
            f" ({atom.counted})"
        )
    label = _label(atom.subject, scope)
    if not isinstance(atom, Comparison):
        default = " (not recorded; protocol default)" if atom.subject in defaults_used else ""
        if finding.holds:
            return f"{label}: {finding.value}{default}"
        return f"{label}: {finding.value}{default}, not {' or '.join(sorted(atom.values))}"
    kind = scope.get(atom.subject)
    unit = atom.unit if isinstance(kind, QuantityType) else ""
    value = finding.value
    assert isinstance(value, Fraction)
    assert finding.threshold is not None
    shown = _amount(value, unit)
    typed = entered.get(atom.subject)
    if atom.completed_years and value != math.floor(value):
        # An age compares in completed years: say so, and what was entered.
        shown = f"{format_number(Fraction(math.floor(value)))} completed years ({typed or shown})"
    elif (
        typed is not None
        and not isinstance(kind, CountType)
        and not _same_spelling(typed, shown, unit)
    ):
        shown = f"{typed} (= {shown})"
    threshold = _amount(finding.threshold, unit)
    if atom.reference is not None and finding.reference_value is not None:
        default = ", protocol default" if atom.reference in defaults_used else ""
        reference = (
            f"{_label(atom.reference, scope)} {_amount(finding.reference_value, unit)}{default}"
        )
        multiple = "" if atom.factor == 1 else f"{format_number(atom.factor)} x "
        threshold = f"{multiple}{reference} = {threshold}" if multiple else reference
        ratio = (
            f"; {format_number(value / finding.reference_value, 2)} x"
            if finding.reference_value
            else ""
        )
    else:
        ratio = ""
    if atom.completed_years:
        value = Fraction(math.floor(value))
    op = atom.op if finding.holds else f"not {atom.op}"
    gap = abs(value - finding.threshold)
    margin = "on the threshold" if gap == 0 else f"margin {_amount(gap, unit)}"
    return f"{label} {shown} {op} {threshold} ({margin}{ratio})"


def _number(value: Value) -> Fraction:
    assert isinstance(value, Fraction)
    return value


def _same_spelling(typed: str, shown: str, unit: str) -> bool:
    try:
        number, spelled = split_value(typed)
    except UnitError:
        return False
    return f"{format_number(number)} {spelled}".strip() == shown or spelled in ("", unit)
