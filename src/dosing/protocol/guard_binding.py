"""Binding a parsed guard to a protocol's names and units: every name checked against the
inputs, every comparison turned into an exact threshold in the subject's canonical unit
(`guards.Comparison`), so that evaluation is arithmetic on fractions.
"""

from __future__ import annotations

from fractions import Fraction

from dosing.core.errors import ProtocolError, UnitError
from dosing.core.units import conversion
from dosing.core.vocabulary import VOCABULARY, Quantitative

# ---------------------------------------------------------------------------- syntax
from dosing.protocol.guard_parser import (
    AllOf,
    AnyOf,
    Cmp,
    CountOf,
    Definitions,
    Literal,
    Member,
    Negation,
    Operand,
    Product,
    Ref,
    Syntax,
    Truthy,
    parse,
)
from dosing.protocol.guards import (
    CategoryType,
    Comparison,
    Complement,
    Conjunction,
    CountType,
    Disjunction,
    Either,
    Guard,
    Membership,
    NameType,
    QuantityType,
    Scope,
    Tally,
)

_FLIPPED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def compile_guard(source: str, scope: Scope, definitions: Definitions | None = None) -> Guard:
    """Parse and bind a guard in one step."""
    return bind(parse(source, definitions), scope)


def bind(tree: Syntax, scope: Scope) -> Guard:
    """Check names, kinds and units of a parsed guard; give thresholds in canonical units."""
    if isinstance(tree, AllOf):
        return Conjunction(tuple(bind(item, scope) for item in tree.items))
    if isinstance(tree, AnyOf):
        return Disjunction(tuple(bind(item, scope) for item in tree.items))
    if isinstance(tree, Negation):
        return Complement(bind(tree.item, scope))
    if isinstance(tree, Truthy):
        kind = _lookup(tree.subject.name, scope, tree.text)
        if not (isinstance(kind, CategoryType) and "yes" in kind.values):
            raise ProtocolError(f"'{tree.text}': {tree.subject.name} is not a yes/no observation")
        return Membership(tree.subject.name, frozenset({"yes"}), tree.text, frozenset(kind.values))
    if isinstance(tree, Member):
        kind = _lookup(tree.subject.name, scope, tree.text)
        if not isinstance(kind, CategoryType):
            raise ProtocolError(
                f"'{tree.text}': 'in' needs a categorical value, not {tree.subject.name}"
            )
        chosen = {_category(word, kind, tree.text) for word in tree.values}
        if tree.negated:
            chosen = set(kind.values) - chosen
        return Membership(tree.subject.name, frozenset(chosen), tree.text, frozenset(kind.values))
    return _bind_comparison(tree, scope)


def _lookup(name: str, scope: Scope, text: str) -> NameType:
    if name not in scope:
        raise ProtocolError(
            f"'{text}': unknown name '{name}'; known here: {', '.join(sorted(scope))}"
        )
    return scope[name]


def _category(word: str, kind: CategoryType, text: str) -> str:
    if word not in kind.values:
        raise ProtocolError(
            f"'{text}': '{word}' is not a value of {kind.label}; values: {', '.join(kind.values)}"
        )
    return word


def _bind_tally(counted: CountOf, op: str, other: Operand, scope: Scope, text: str) -> Tally:
    if not isinstance(other, Literal) or other.unit is not None:
        raise ProtocolError(f"'{text}': a count is compared with a plain number")
    items = tuple(bind(item, scope) for item in counted.items)
    return Tally(items, op, other.value, text, counted.text)


def _bind_comparison(tree: Cmp, scope: Scope) -> Guard:
    left, op, right = tree.left, tree.op, tree.right
    if isinstance(left, CountOf):
        return _bind_tally(left, op, right, scope, tree.text)
    if isinstance(right, CountOf):
        return _bind_tally(right, _FLIPPED[op], left, scope, tree.text)
    if not isinstance(left, Ref):
        if not isinstance(right, Ref):
            raise ProtocolError(f"'{tree.text}': one side of a comparison must be a name")
        left, right, op = right, left, _FLIPPED[op]
    kind = _lookup(left.name, scope, tree.text)
    if isinstance(kind, CategoryType):
        if op not in ("==", "!=") or not isinstance(right, Ref):
            raise ProtocolError(
                f"'{tree.text}': {left.name} is categorical; compare it with == or != to one of "
                f"{', '.join(kind.values)}"
            )
        word = _category(right.name, kind, tree.text)
        chosen = {word} if op == "==" else set(kind.values) - {word}
        return Membership(left.name, frozenset(chosen), tree.text, frozenset(kind.values))
    if isinstance(right, Literal) and right.alternative is not None:
        return _bind_either(left.name, op, right, scope, tree.text)
    if isinstance(right, Literal):
        factor = _literal_in(right, kind, left.name, tree.text)
        completed = _in_whole_years(left.name, right, kind)
        if completed and factor.denominator != 1:
            raise ProtocolError(
                f"'{tree.text}': an age in years is compared in completed years; write a whole "
                "number of years, or the threshold in months, weeks or days"
            )
        return Comparison(left.name, op, factor, None, _unit_of(kind), tree.text, completed)
    if isinstance(right, Product):
        multiple, reference = right.factor.value, right.name
    else:
        multiple, reference = Fraction(1), right
    reference_kind = _lookup(reference.name, scope, tree.text)
    scale = _same_kind(kind, reference_kind, left.name, reference.name, tree.text)
    return Comparison(left.name, op, multiple * scale, reference.name, _unit_of(kind), tree.text)


def _bind_either(name: str, op: str, literal: Literal, scope: Scope, text: str) -> Either:
    """'triglycerides >= 3.0 mmol/L (265 mg/dL)': each threshold binds to the measure of the
    analyte its unit belongs to (the lab or its twin in the other measure), never converted."""
    assert literal.alternative is not None
    entry = VOCABULARY.get(name)
    twin = entry.measure.twin if entry and isinstance(entry.measure, Quantitative) else None
    candidates = [n for n in (name, twin) if n is not None and n in scope]
    items: list[Comparison] = []
    for threshold in (literal, literal.alternative):
        bound = None
        for candidate in candidates:
            kind = scope[candidate]
            assert isinstance(kind, QuantityType)
            try:
                factor = _literal_in(threshold, kind, candidate, text)
            except ProtocolError:
                continue
            bound = Comparison(candidate, op, factor, None, kind.unit, text)
            break
        if bound is None or any(item.subject == bound.subject for item in items):
            measures = ", ".join(f"{n} in {_unit_of(scope[n])}" for n in candidates)
            raise ProtocolError(
                f"'{text}': the two thresholds must be in the two measures of {name}, which "
                f"do not convert ({measures}); declare both labs, one threshold in each unit"
            )
        items.append(bound)
    return Either(tuple(items), text)


def _in_whole_years(name: str, literal: Literal, kind: NameType) -> bool:
    """Whether an age threshold is written in years: then completed years are compared, as
    trial eligibility counts age. Thresholds in smaller units compare the exact age."""
    if name != "age" or not isinstance(kind, QuantityType) or literal.unit is None:
        return False
    try:
        return conversion(literal.unit, "years", "age").scale == 1
    except UnitError:
        return False


def _unit_of(kind: NameType) -> str:
    return kind.unit if isinstance(kind, QuantityType) else ""


def _literal_in(literal: Literal, kind: NameType, name: str, text: str) -> Fraction:
    if isinstance(kind, CountType):
        if literal.unit is not None:
            raise ProtocolError(f"'{text}': {name} is a plain count; drop the unit {literal.unit}")
        return literal.value
    assert isinstance(kind, QuantityType)
    if literal.unit is None:
        raise ProtocolError(f"'{text}': the threshold for {name} needs a unit (in {kind.unit})")
    try:
        return conversion(literal.unit, kind.unit, kind.label, kind.molar_mass).apply(literal.value)
    except UnitError as error:
        raise ProtocolError(f"'{text}': {error}") from None


def _same_kind(kind: NameType, other: NameType, name: str, other_name: str, text: str) -> Fraction:
    if isinstance(kind, QuantityType) and isinstance(other, QuantityType):
        try:
            return conversion(other.unit, kind.unit, kind.label, kind.molar_mass).scale
        except UnitError as error:
            raise ProtocolError(f"'{text}': {error}") from None
    if isinstance(kind, CountType) and isinstance(other, CountType):
        return Fraction(1)
    raise ProtocolError(f"'{text}': {name} and {other_name} are not the same kind of value")
