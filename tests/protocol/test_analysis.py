"""Guard analysis: overlapping and disjoint guards, with a readable witness."""

from __future__ import annotations

from fractions import Fraction

from dosing.protocol.analysis import common_region, witness
from dosing.protocol.guard_binding import compile_guard
from dosing.protocol.guards import CategoryType, QuantityType, Scope

SCOPE: Scope = {
    "anc": QuantityType("x10^9/L", "ANC"),
    "alt": QuantityType("U/L", "ALT"),
    "alt_uln": QuantityType("U/L", "ALT ULN"),
    "held_from": CategoryType(("dose_400", "dose_300", "none"), "held from"),
}


def overlap(first: str, second: str) -> dict[str, Fraction | str] | None:
    box = common_region(compile_guard(first, SCOPE), compile_guard(second, SCOPE))
    return None if box is None else witness(box)


def test_touching_bounds_do_not_overlap() -> None:
    """'anc < 1.5' and 'anc >= 1.5' share no input."""
    assert overlap("anc < 1.5 x10^9/L", "anc >= 1.5 x10^9/L") is None


def test_shared_bound_overlaps_on_the_threshold() -> None:
    """'anc <= 1.5' and 'anc >= 1.5' overlap exactly at 1.5."""
    assert overlap("anc <= 1.5 x10^9/L", "anc >= 1.5 x10^9/L") == {"anc": Fraction(3, 2)}


def test_categories_separate_rules() -> None:
    """Rules split by the state held from never overlap."""
    assert overlap("held_from == dose_400", "held_from != dose_400") is None


def test_negation_and_multiples() -> None:
    """'not (alt > 5 x ULN)' overlaps 'alt > 2.5 x ULN' between 2.5 and 5 x ULN."""
    point = overlap("not (alt > 5 * alt_uln)", "alt > 2.5 * alt_uln")
    assert point is not None
    assert Fraction(5, 2) < point["alt/alt_uln"] <= 5  # type: ignore[operator]
