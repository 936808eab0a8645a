"""Guards: a safe parser, typed binding, and three-valued evaluation."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import cast

import pytest

from dosing.core.errors import GuardSyntaxError, ProtocolError
from dosing.protocol.guard_binding import compile_guard
from dosing.protocol.guard_parser import parse
from dosing.protocol.guards import CategoryType, CountType, QuantityType, Scope, evaluate
from tests.conftest import time_limit

SCOPE: Scope = {
    "anc": QuantityType("x10^9/L", "ANC"),
    "platelets": QuantityType("x10^9/L", "platelets"),
    "alt": QuantityType("U/L", "ALT"),
    "alt_uln": QuantityType("U/L", "ALT ULN"),
    "trough": QuantityType("ng/mL", "tacrolimus trough", "804.02"),
    "bleeding": CategoryType(("yes", "no"), "bleeding"),
    "holds": CountType("holds"),
}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("", "the guard is empty"),
        ("anc <", "expected a name or a number but found the end in 'anc <'"),
        ("(anc < 1 x10^9/L", "expected ')' but found the end in '(anc < 1 x10^9/L'"),
        ("anc ~ 1", "unexpected '~' at column 5 in 'anc ~ 1'"),
        ("__import__('os')", "unexpected ''' at column 12 in '__import__('os')'"),
        ("anc < 1 x10^9/L anc", "expected 'and', 'or' or the end but found 'anc' at column 17"),
    ],
)
def test_syntax_errors(source: str, message: str) -> None:
    """Malformed guards are refused with where it went wrong; nothing is evaluated."""
    with pytest.raises(GuardSyntaxError, match=re.escape(message)):
        parse(source)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("neutrophils < 1 x10^9/L", "unknown name 'neutrophils'"),
        ("anc < 1.5", "the threshold for anc needs a unit (in x10^9/L)"),
        ("anc < 1.5 mg/dL", "mg/dL measures mass concentration, but ANC is measured as count"),
        ("bleeding == perhaps", "'perhaps' is not a value of bleeding; values: yes, no"),
        ("holds >= 2 days", "holds is a plain count; drop the unit days"),
        ("alt > 2 * anc", "cannot be converted"),
        ("anc < 1 x10^9999999/L", "unit 'x10^9999999/L' is not one dosing knows"),
        ("anc", "anc is not a yes/no observation"),
    ],
)
def test_binding_errors(source: str, message: str) -> None:
    """Names, units and categories are checked against the protocol when it loads."""
    with pytest.raises(ProtocolError) as caught:
        compile_guard(source, SCOPE)
    assert message in str(caught.value)


def test_threshold_written_in_another_unit_is_exact() -> None:
    """A trough of 10 ng/mL satisfies '<= 10 ug/L'; 10.01 ng/mL does not."""
    guard = compile_guard("trough <= 10 ug/L", SCOPE)
    assert evaluate(guard, {"trough": Fraction(10)}).truth is True
    assert evaluate(guard, {"trough": Fraction("10.01")}).truth is False


def test_molar_threshold_converted_with_molar_mass() -> None:
    """'trough > 12.437 nmol/L' is compared in ng/mL through 804.02 g/mol, exactly."""
    guard = compile_guard("trough > 12.437 nmol/L", SCOPE)
    on = Fraction("12.437") * Fraction("804.02") / 1000
    assert evaluate(guard, {"trough": on}).truth is False
    assert evaluate(guard, {"trough": on + Fraction(1, 10**9)}).truth is True


def test_multiples_of_a_reference() -> None:
    """'alt > 2.5 * alt_uln' compares against the patient's own ULN."""
    guard = compile_guard("alt > 2.5 * alt_uln", SCOPE)
    assert evaluate(guard, {"alt": Fraction(100), "alt_uln": Fraction(40)}).truth is False
    assert evaluate(guard, {"alt": Fraction(101), "alt_uln": Fraction(40)}).truth is True


def test_unknown_only_matters_where_it_could_change_the_answer() -> None:
    """An 'or' with one true part is true even when another part is missing; else unknown."""
    guard = compile_guard("anc < 1 x10^9/L or platelets < 50 x10^9/L", SCOPE)
    assert evaluate(guard, {"anc": Fraction(1, 2)}).truth is True
    outcome = evaluate(guard, {"anc": Fraction(2)})
    assert outcome.truth is None
    assert outcome.missing == {"platelets"}
    both = compile_guard("anc < 1 x10^9/L and platelets < 50 x10^9/L", SCOPE)
    assert evaluate(both, {"anc": Fraction(2)}).truth is False


def test_not_and_membership() -> None:
    """'not bleeding' and 'in [...]' work on categories."""
    guard = compile_guard(
        "not bleeding and holds in [1, 2]", {**SCOPE, "holds": CategoryType(("1", "2", "3"), "h")}
    )
    assert evaluate(guard, {"bleeding": "no", "holds": "2"}).truth is True
    assert evaluate(guard, {"bleeding": "yes", "holds": "2"}).truth is False
    assert evaluate(guard, {"bleeding": "no", "holds": "3"}).truth is False


def test_number_first_comparison_is_flipped() -> None:
    """'1.5 x10^9/L > anc' means 'anc < 1.5 x10^9/L'."""
    guard = compile_guard("1.5 x10^9/L > anc", SCOPE)
    assert evaluate(guard, {"anc": Fraction(1)}).truth is True
    assert evaluate(guard, {"anc": Fraction(3, 2)}).truth is False


COUNTS: Scope = {
    **SCOPE,
    "ferritin": QuantityType("ug/L", "ferritin"),
    "splenomegaly": CategoryType(("yes", "no"), "splenomegaly"),
}


def test_count_decides_when_every_possible_count_agrees() -> None:
    """count(...) >= 2 is true with two met, unknown while a missing one could still decide."""
    guard = compile_guard(
        "count(anc < 1 x10^9/L, platelets < 100 x10^9/L, splenomegaly) >= 2", COUNTS
    )
    met = {"anc": Fraction(1, 2), "platelets": Fraction(80), "splenomegaly": None}
    assert evaluate(guard, met).truth is True
    open_ = {"anc": Fraction(1, 2), "platelets": Fraction(150), "splenomegaly": None}
    outcome = evaluate(guard, open_)
    assert outcome.truth is None
    assert outcome.missing == {"splenomegaly"}
    failed = {"anc": Fraction(2), "platelets": Fraction(150), "splenomegaly": None}
    assert evaluate(guard, failed).truth is False


def test_counts_nest_and_definitions_are_reused() -> None:
    """A definition can be a count; a count can hold a count."""
    from dosing.protocol.guard_parser import parse_definition

    cytopenia = parse_definition("count(anc < 1 x10^9/L, platelets < 100 x10^9/L) >= 2", {})
    criteria = parse_definition(
        "count(cytopenia, ferritin >= 500 ug/L, splenomegaly)", {"cytopenia": cytopenia}
    )
    guard = compile_guard("criteria >= 2", COUNTS, {"criteria": criteria})
    values: dict[str, Fraction | str | None] = {
        "anc": Fraction(1, 2),
        "platelets": Fraction(50),
        "ferritin": Fraction(600),
        "splenomegaly": "no",
    }
    assert evaluate(guard, values).truth is True
    values["ferritin"] = Fraction(499)
    assert evaluate(guard, values).truth is False


def test_count_needs_a_plain_number() -> None:
    """A count compared with a quantity is refused when the protocol loads."""
    with pytest.raises(ProtocolError, match="a count is compared with a plain number"):
        compile_guard("count(splenomegaly) >= 1 x10^9/L", COUNTS)


AGED: Scope = {
    "age": QuantityType("years", "age"),
    "triglycerides": QuantityType("mg/dL", "triglycerides"),
    "triglycerides_molar": QuantityType("mmol/L", "triglycerides"),
}


@pytest.mark.parametrize(
    ("guard", "age", "holds"),
    [
        ("age <= 22 years", "22.9", True),  # '22 years of age' lasts until the 23rd birthday
        ("age <= 22 years", "23", False),
        ("age > 80 years", "80.99", False),
        ("age > 80 years", "81", True),
        ("age < 18 years", "17.99", True),
        ("age >= 18 years", "18", True),
        ("age < 6 weeks", "0.115", False),  # weeks compare the exact age: 0.115 y > 6 weeks
    ],
)
def test_an_age_in_years_compares_completed_years(guard: str, age: str, holds: bool) -> None:
    assert evaluate(compile_guard(guard, AGED), {"age": Fraction(age)}).truth is holds


def test_a_fractional_threshold_in_years_is_refused() -> None:
    with pytest.raises(ProtocolError, match="an age in years is compared in completed years"):
        compile_guard("age < 17.5 years", AGED)


@pytest.mark.parametrize(
    ("values", "truth"),
    [
        ({"triglycerides": Fraction(265)}, True),  # compared in mg/dL, as reported
        ({"triglycerides": Fraction(264)}, False),
        ({"triglycerides_molar": Fraction(3)}, True),  # compared in mmol/L, never converted
        ({"triglycerides_molar": Fraction("2.99")}, False),
        ({}, None),  # neither measured: unknown
        ({"triglycerides": Fraction(300), "triglycerides_molar": Fraction(2)}, None),  # disagree
        ({"triglycerides": Fraction(300), "triglycerides_molar": Fraction(4)}, True),
    ],
)
def test_one_analyte_in_two_measures_reads_the_one_reported(
    values: dict[str, Fraction], truth: bool | None
) -> None:
    guard = compile_guard("triglycerides >= 3.0 mmol/L (265 mg/dL)", AGED)
    assert evaluate(guard, values).truth is truth


# Issue 10 items 5, 13, 14: guards are read strictly and in bounded time and depth.


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "anc < \u0661.5 x10^9/L",
            "U+0661 ARABIC-INDIC DIGIT ONE is not a digit dosing reads: type the digits 0-9 "
            "(column 7 in 'anc < \u0661.5 x10^9/L')",
        ),
        (
            "\u0430nc < 1.5 x10^9/L",
            "U+0430 CYRILLIC SMALL LETTER A looks like 'a' but is not that character: retype it "
            "(column 1 in '\u0430nc < 1.5 x10^9/L')",
        ),
        (
            "anc < .5 x10^9/L",
            "'.5' at column 7 starts with a decimal point; write 0.5 (in 'anc < .5 x10^9/L')",
        ),
        (
            "anc < " + "1" * 5000 + " x10^9/L",
            "a number of 5000 digits at column 7 is not a threshold; dosing reads at most 30 "
            "digits",
        ),
    ],
    ids=["arabic-indic digit", "cyrillic a", "naked decimal point", "5000 digits"],
)
def test_characters_a_guard_cannot_hold_are_named(source: str, message: str) -> None:
    """A digit of another script was read as a digit; a Cyrillic letter gave 'unexpected'."""
    with pytest.raises(GuardSyntaxError) as caught:
        parse(source)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "source",
    [
        "(" * 5000 + "anc < 1 x10^9/L" + ")" * 5000,
        "not " * 5000 + "anc < 1 x10^9/L",
        "count(" * 2000 + "bleeding" + ") >= 1" * 2000,
    ],
    ids=["parentheses", "not chain", "counts"],
)
def test_deep_nesting_is_refused_not_a_recursion_error(source: str) -> None:
    """Issue 10 item 14: 5,000 parentheses or nots raised RecursionError (exit 70)."""
    with pytest.raises(GuardSyntaxError) as caught:
        parse(source)
    assert str(caught.value).startswith(
        "the guard nests more than 32 levels deep (parentheses, not, count) at column "
    )


def test_a_megabyte_guard_is_tokenized_in_linear_time() -> None:
    """Issue 10 item 13: the tokenizer was quadratic (1 MB took over 20 s)."""
    source = " or ".join(["anc < 1 x10^9/L"] * 55_000)  # about 1 MB
    with time_limit(10), pytest.raises(GuardSyntaxError) as caught:
        parse(source)
    assert str(caught.value) == (
        "the guard has more than 1000 conditions once its definitions are written out; "
        "split it into simpler rules"
    )


def test_definitions_that_double_at_each_step_are_refused() -> None:
    """A definition used twice in the next, over and over, doubles the guard each time: 2^40
    conditions once written out. Refused where it passes 1000."""
    from dosing.protocol.guard_parser import Definitions, parse_definition

    definitions: dict[str, object] = {"d0": parse_definition("anc < 1 x10^9/L", {})}
    for level in range(1, 10):  # d9 is 512 conditions
        text = f"d{level - 1} and d{level - 1}"
        definitions[f"d{level}"] = parse_definition(text, cast(Definitions, definitions))
    with pytest.raises(GuardSyntaxError) as caught:
        parse_definition("d9 and d9", cast(Definitions, definitions))
    assert str(caught.value) == (
        "the guard has more than 1000 conditions once its definitions are written out; "
        "split it into simpler rules"
    )
