"""Findings in words: which value, which threshold, and how far apart they were."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Protocol

from dosing.core.errors import UnitError
from dosing.core.units import conversion, format_number, rounded, split_value
from dosing.protocol.guards import (
    NEGATED_OP,
    WHOLE_DAYS,
    Comparison,
    CountType,
    Finding,
    Membership,
    NameType,
    QuantityType,
    Tally,
    Value,
)


def _label(name: str, scope: Mapping[str, NameType]) -> str:
    kind = scope.get(name)
    return kind.label if kind is not None else name


def _amount(value: Fraction, unit: str, threshold: Fraction | None = None) -> str:
    """A measured or derived value, to clinical precision."""
    return _with_unit(clinical(value, threshold), unit)


def _exact(value: Fraction, unit: str) -> str:
    """A threshold or a reference limit, as the protocol or the patient gives it."""
    return _with_unit(format_number(value), unit)


_DURATIONS = frozenset({"days", "weeks", "months", "years"})


def _with_unit(number: str, unit: str) -> str:
    """'1 month', '2 months', '1.5 x10^9/L'."""
    if number == "1" and unit in _DURATIONS:
        unit = unit[:-1]
    return f"{number} {unit}".strip()


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
        wanted = sorted(atom.values)
        if finding.holds or not _worth_listing(wanted, atom.domain):
            return f"{label}: {finding.value}{default}"
        return f"{label}: {finding.value}{default}, not {' or '.join(wanted)}"
    kind = scope.get(atom.subject)
    value = finding.value
    assert isinstance(value, Fraction)
    assert finding.threshold is not None
    if isinstance(kind, CountType):  # a count the rules keep: no unit, no margin
        count, limit = format_number(value), format_number(finding.threshold)
        if atom.op == "==":
            return f"{label} {count}" if finding.holds else f"{label} {count}, not {limit}"
        return f"{label} {count} {atom.op if finding.holds else f'not {atom.op}'} {limit}"
    unit = atom.unit if isinstance(kind, QuantityType) else ""
    shown = _amount(value, unit, finding.threshold)
    typed = entered.get(atom.subject)
    written = _written(atom)
    if atom.completed_years:
        shown = _age(value, typed)
    elif typed is not None and written and _spelled(typed) == written[1]:
        shown = typed  # '5.9 weeks' against '6 weeks': no conversion to show
    elif typed is not None and not _same_spelling(typed, shown, unit):
        shown = f"{typed} (= {shown})"
    threshold = " ".join(written) if written else _exact(finding.threshold, unit)
    ratio = ""
    if atom.reference is not None and finding.reference_value is not None:
        threshold = _reference(atom, finding, scope, defaults_used)
        if isinstance(scope.get(atom.reference), QuantityType) and _own_unit(atom, scope) == unit:
            ratio = (
                f"; {format_number(value / finding.reference_value, 2)} x"
                if finding.reference_value
                else ""
            )
    if atom.completed_years:
        value = Fraction(math.floor(value))
    if atom.op in ("==", "!="):  # 'level 400 mg == 400 mg', never 'not !='
        return f"{label} {shown} {atom.op if finding.holds else NEGATED_OP[atom.op]} {threshold}"
    op = atom.op if finding.holds else f"not {atom.op}"
    margin = _margin(atom, value, finding.threshold, unit, written)
    return f"{label} {shown} {op} {threshold} ({margin}{ratio})"


def _worth_listing(wanted: list[str], domain: frozenset[str]) -> bool:
    """Whether the values a rule wanted say more than the value seen: one or two of a few
    answers ('response: partial, not complete'; never 'not yes', never a list of states)."""
    return len(wanted) <= 2 and (not domain or 2 * len(wanted) < len(domain) <= 5)


def _age(value: Fraction, typed: str | None) -> str:
    """An age compared in completed years: '50 (born 1975-06-15)', '52 years', '2.5 years (2
    completed years)'."""
    whole = format_number(Fraction(math.floor(value)))
    born = typed.partition(", born ")[2] if typed else ""
    if born:
        return f"{whole} (born {born})"
    if value == math.floor(value):
        return f"{whole} years"
    return f"{typed or format_number(value, 2) + ' years'} ({whole} completed years)"


def _own_unit(atom: Comparison, scope: Mapping[str, NameType]) -> str:
    kind = scope.get(atom.reference or "")
    return kind.unit if isinstance(kind, QuantityType) else atom.unit


def _reference(
    atom: Comparison,
    finding: Finding,
    scope: Mapping[str, NameType],
    defaults_used: frozenset[str],
) -> str:
    """'2.5 x ALT ULN 40 U/L, protocol default = 100 U/L'; a site parameter in its own unit:
    'taper interval 1 month' (not '30.4375 x taper interval 1 days')."""
    assert atom.reference is not None
    assert finding.reference_value is not None
    assert finding.threshold is not None
    unit = atom.unit
    own = _own_unit(atom, scope)
    multiple = atom.factor
    if own != unit:
        try:
            multiple = atom.factor / conversion(own, unit, atom.reference).apply(Fraction(1))
        except UnitError:
            own = unit
    default = ", protocol default" if atom.reference in defaults_used else ""
    reference = f"{_label(atom.reference, scope)} {_amount(finding.reference_value, own)}{default}"
    times = "" if multiple == 1 else f"{format_number(multiple)} x "
    if own != unit:  # a duration or amount named in its own unit: the product says nothing new
        return f"{times}{reference}"
    return f"{times}{reference} = {_exact(finding.threshold, unit)}" if times else reference


def _margin(
    atom: Comparison,
    value: Fraction,
    threshold: Fraction,
    unit: str,
    written: tuple[str, str] | None = None,
) -> str:
    gap = abs(value - threshold)
    if gap == 0:
        return "on the threshold"
    if atom.subject in WHOLE_DAYS and threshold.denominator != 1:
        # Whole days against a duration that is not (1 month = 30.4375 days): the distance to
        # the first whole day on the other side ('24 days' from day 7 to day 31).
        other = math.floor(threshold) if value > threshold else math.ceil(threshold)
        return f"margin {_with_unit(format_number(abs(value - other)), unit)}"
    if written and atom.subject not in WHOLE_DAYS:  # an age against '6 weeks': in weeks
        try:
            in_written = conversion(unit, written[1], atom.subject).apply(gap)
        except UnitError:
            return f"margin {_amount(gap, unit)}"
        return f"margin {_amount(in_written, written[1])}"
    return f"margin {_amount(gap, unit)}"


def _written(atom: Comparison) -> tuple[str, str] | None:
    """A duration threshold as the protocol wrote it ('4 weeks', '6 months'), when that is
    not the unit it is compared in; None otherwise."""
    if atom.reference is not None:
        return None
    _, _, text = atom.text.partition(f" {atom.op} ")
    try:
        number, spelled = split_value(text.strip())
    except UnitError:
        return None
    if spelled == atom.unit or spelled.rstrip("s") not in ("day", "week", "month", "year"):
        return None
    return format_number(number), spelled


def _spelled(typed: str) -> str:
    try:
        return split_value(typed)[1]
    except UnitError:
        return ""


@lru_cache(maxsize=16_384)
def clinical(value: Fraction, threshold: Fraction | None = None) -> str:
    """A value to three significant figures, as labs report them ('0.702', '57.1', '1200');
    more where three would put it on, or across, the threshold it is compared with. Each
    distinct (value, threshold) is worked out once."""
    exact = format_number(value)  # rounding is symmetric: its digits are those of abs(value)
    if value == 0 or len(exact.lstrip("-").replace(".", "").lstrip("0")) <= 3:
        return exact
    magnitude = math.floor(math.log10(abs(value)))
    places = max(0, 2 - magnitude)
    shown = format_number(value, places)
    if threshold is not None:
        side = (value > threshold) - (value < threshold)
        limit = format_number(threshold)
        while places < 8 and (
            _side(rounded(value, places), threshold) != side or (side and shown == limit)
        ):
            places += 1
            shown = format_number(value, places)
    return shown


def _side(value: Fraction, threshold: Fraction) -> int:
    return (value > threshold) - (value < threshold)


def _number(value: Value) -> Fraction:
    assert isinstance(value, Fraction)
    return value


def _same_spelling(typed: str, shown: str, unit: str) -> bool:
    try:
        number, spelled = split_value(typed)
    except UnitError:
        return False
    return f"{format_number(number)} {spelled}".strip() == shown or spelled in ("", unit)


def _key(finding: Finding) -> tuple[str, str]:
    atom = finding.atom
    if isinstance(atom, Tally):
        return atom.counted, "count"
    if isinstance(atom, Comparison):
        return atom.subject, {"<": "<", "<=": "<", ">": ">", ">=": ">"}.get(atom.op, "=")
    return atom.subject, "in"


def _distance(finding: Finding) -> tuple[int, int]:
    """How far the value was from the threshold, relative to it (0 for categories), as a
    numerator and a positive denominator: compared by cross-multiplying, in integers."""
    if not isinstance(finding.atom, Comparison) or finding.threshold is None:
        return 0, 1
    value, threshold = _number(finding.value), finding.threshold
    # v = a/b, t = c/d: |v - t| = g/(bd), and |v - t| / |t| = g/(b|c|)
    a, b, c, d = value.numerator, value.denominator, threshold.numerator, threshold.denominator
    gap = abs(a * d - c * b)
    return (gap, b * abs(c)) if c else (gap, b * d)


def nearest(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per subject and direction, the one whose threshold was nearest the value
    (ANC 1.3 not >= 1.5 says more than ANC 1.3 not >= 1.0), in the order first seen."""
    chosen: dict[tuple[str, str], tuple[Finding, tuple[int, int] | None]] = {}
    for finding in findings:
        key = _key(finding)
        known = chosen.get(key)
        if known is None:
            chosen[key] = (finding, None)  # a distance is needed only against another
            continue
        before = _distance(known[0]) if known[1] is None else known[1]
        how_far = _distance(finding)
        closer = how_far[0] * before[1] < before[0] * how_far[1]
        chosen[key] = (finding, how_far) if closer else (known[0], before)
    return [finding for finding, _ in chosen.values()]


def compact(finding: Finding, scope: Mapping[str, NameType]) -> str:
    """A finding as a short fact: 'ANC 3.5 >= 1.5 x10^9/L', 'ALT 28 <= 100 U/L (2.5 x ALT
    ULN)', 'taper: days in this state 7 < taper interval 1 month'."""
    atom = finding.atom
    if isinstance(atom, Membership):
        return f"{_label(atom.subject, scope)}: {finding.value}"
    if not isinstance(atom, Comparison) or isinstance(scope.get(atom.subject), CountType):
        return describe(finding, scope, {})
    assert finding.threshold is not None
    kind = scope.get(atom.subject)
    unit = atom.unit if isinstance(kind, QuantityType) else ""
    value = _number(finding.value)
    if atom.completed_years:
        value = Fraction(math.floor(value))
    relation = atom.op if finding.holds else NEGATED_OP[atom.op]
    written = _written(atom)
    threshold = " ".join(written) if written else _exact(finding.threshold, unit)
    if atom.reference is not None and finding.reference_value is not None:
        named = _reference(atom, finding, scope, frozenset())
        if _own_unit(atom, scope) == unit:  # '100 U/L (2.5 x ALT ULN)'
            times = "" if atom.factor == 1 else f"{format_number(atom.factor)} x "
            named = f"{threshold} ({times}{_label(atom.reference, scope)})"
        threshold = named  # else a duration in its own unit: 'taper interval 1 month'
    subject = _label(atom.subject, scope)
    if written:  # 'age 8 years >= 6 weeks', 'days on therapy 21 days < 4 weeks'
        return f"{subject} {_amount(value, unit)} {relation} {threshold}"
    return f"{subject} {clinical(value, finding.threshold)} {relation} {threshold}"


class Wording(Protocol):
    """Findings into words: these functions, or an evaluator that remembers their answers."""

    def nearest(self, findings: Iterable[Finding]) -> list[Finding]: ...

    def compact(self, finding: Finding, scope: Mapping[str, NameType]) -> str: ...


def not_met(
    rules: Sequence[str], findings: Iterable[Finding], shown: Iterable[Finding],
    scope: Mapping[str, NameType], kept: Iterable[str] = (), words: Wording | None = None,
) -> str | None:  # fmt: skip
    """One line: why the rules above the one that fired did not fire, from the patient's
    values (not the counts and states the protocol keeps, `kept`). A subject the fired rule
    already shows is not repeated; None when nothing is left to say. `words`: whose
    `nearest` and `compact` to use (these functions by default)."""
    said = {finding_subject(f) for f in shown} | set(kept)
    pick, short = (nearest, compact) if words is None else (words.nearest, words.compact)
    facts = [short(f, scope) for f in pick(findings) if finding_subject(f) not in said]
    if len(rules) > 2:  # the facts matter, not a list of ids
        above = f"the {len(rules)} rules above it"
    else:
        above = f"the {'rule' if len(rules) == 1 else 'rules'} above it ({' and '.join(rules)})"
    return f"Not met by {above}: {'; '.join(facts)}" if facts else None


def finding_subject(finding: Finding) -> str:
    atom = finding.atom
    return atom.counted if isinstance(atom, Tally) else atom.subject
