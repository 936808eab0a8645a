"""The shared observation vocabulary: names, LOINC aliases, canonical units, typo guards.

Plausible ranges here are data-entry guards (a platelet count of 5,000 x10^9/L is a typo),
not clinical thresholds; a protocol may narrow them, and a user may accept a value outside
them knowingly.
"""

from __future__ import annotations

import difflib
from fractions import Fraction
from typing import Literal

import attrs

from dosing.core.characters import ascii_lookalike, first_foreign, foreign, shown
from dosing.core.errors import ObservationError

Role = Literal["lab", "uln", "fact", "assessment"]
YES_NO = ("yes", "no")
RESPONSES = ("complete", "partial", "none", "progression")
RELAPSES = ("no", "clinical", "hematologic", "molecular")
GRADES = ("0", "1", "2", "3", "4")
TIMINGS = ("trough", "not_trough")


@attrs.frozen
class Quantitative:
    """A measured quantity: canonical unit and the range a real value can fall in."""

    canonical: str
    low: Fraction
    high: Fraction
    molar_mass: str | None = None
    """g/mol, when mass and molar units of this analyte may be converted."""
    bare_unit: str | None = None
    """Unit assumed for a bare number (only for age, in years); None means a unit is required."""
    twin: str | None = None
    """The same analyte in a measure that does not convert to this one (triglycerides in
    mmol/L beside mg/dL): a value typed in the twin's units is read as the twin."""
    smallest: Fraction = Fraction(0)
    """The smallest value above 0 a lab reports: between 0 and this, a value is a misreading
    (for a count, less than one cell per microlitre)."""


@attrs.frozen
class Categorical:
    """An assessment with a fixed set of answers."""

    values: tuple[str, ...]


@attrs.frozen
class Observable:
    """One thing a protocol can ask about a patient."""

    name: str
    label: str
    role: Role
    measure: Quantitative | Categorical
    loinc: tuple[str, ...] = ()


def _q(canonical: str, low: str, high: str, molar_mass: str | None = None) -> Quantitative:
    return Quantitative(canonical, Fraction(low), Fraction(high), molar_mass)


_COUNT = "x10^9/L"


def _count(high: str) -> Quantitative:
    """A cell count in x10^9/L: 0 is a real result, but less than one cell per microlitre
    (0.001 x10^9/L) is not one any lab reports."""
    return Quantitative(_COUNT, Fraction(0), Fraction(high), smallest=Fraction(1, 1000))


# LOINC codes: clinical-facts.md ("LOINC codes"), and for the labs and facts the shipped
# protocols read beyond that list: body weight 29463-7, body height 8302-2, body temperature
# 8310-5 (FHIR vital signs), age at collection 30525-0 (as lab exports send it), triglycerides
# 2571-8 (mass) and 14927-8 (moles), creatinine 14682-9 (moles). A code names the analyte;
# the unit of each result decides the measure (a molar triglyceride is read as the twin).
# sIL-2R has no code here: none could be confirmed from the sources, so a FHIR result names it
# with the dosing vocabulary's own code system (fhir_codes.VOCABULARY_SYSTEM).
_ENTRIES: tuple[Observable, ...] = (
    Observable("anc", "ANC", "lab", _count("100"), ("751-8",)),
    Observable("platelets", "platelets", "lab", _count("3000"), ("777-3",)),
    Observable("wbc", "WBC", "lab", _count("1000"), ("6690-2",)),
    Observable("eosinophils", "eosinophils", "lab", _count("500"), ("711-2",)),
    Observable("hemoglobin", "hemoglobin", "lab", _q("g/L", "10", "250"), ("718-7",)),
    Observable("alt", "ALT", "lab", _q("U/L", "0", "20000"), ("1742-6",)),
    Observable("ast", "AST", "lab", _q("U/L", "0", "20000"), ("1920-8",)),
    Observable(
        "bilirubin", "bilirubin", "lab", _q("mg/dL", "0", "60", "584.66"), ("1975-2", "14631-6")
    ),
    Observable(
        "creatinine",
        "creatinine",
        "lab",
        _q("mg/dL", "0.05", "40", "113.12"),
        ("2160-0", "14682-9"),
    ),
    Observable(
        "tacrolimus_trough",
        "tacrolimus trough",
        "lab",
        _q("ng/mL", "0", "200", "804.02"),
        ("77348-1", "11253-2"),
    ),
    Observable("ferritin", "ferritin", "lab", _q("ug/L", "0", "1000000"), ("2276-4",)),
    Observable("fibrinogen", "fibrinogen", "lab", _q("g/L", "0", "20"), ("3255-7",)),
    # HLH-2004 states its threshold in both measures (>= 3.0 mmol/L, >= 265 mg/dL), which do
    # not agree exactly: a value is compared in the measure it was reported in, never converted.
    Observable(
        "triglycerides",
        "triglycerides",
        "lab",
        attrs.evolve(_q("mg/dL", "0", "10000"), twin="triglycerides_molar"),
        ("3048-6", "2571-8"),
    ),
    Observable(
        "triglycerides_molar",
        "triglycerides",
        "lab",
        attrs.evolve(_q("mmol/L", "0", "113"), twin="triglycerides"),
        ("14927-8",),
    ),
    Observable("sil2r", "sIL-2R", "lab", _q("U/mL", "0", "1000000")),
    Observable("temperature", "temperature", "lab", _q("degC", "25", "45"), ("8310-5",)),
    Observable("alt_uln", "ALT ULN", "uln", _q("U/L", "1", "1000")),
    Observable("ast_uln", "AST ULN", "uln", _q("U/L", "1", "1000")),
    Observable("bilirubin_uln", "bilirubin ULN", "uln", _q("mg/dL", "0.1", "10", "584.66")),
    Observable(
        "age",
        "age",
        "fact",
        Quantitative("years", Fraction(0), Fraction(125), None, "years"),
        ("30525-0",),
    ),
    Observable("weight", "weight", "fact", _q("kg", "0.3", "400"), ("29463-7",)),
    Observable("crcl_weight", "weight for CrCl", "fact", _q("kg", "0.3", "400")),
    Observable("height", "height", "fact", _q("cm", "20", "260"), ("8302-2",)),
    Observable("sex", "sex", "fact", Categorical(("F", "M"))),
    Observable("response", "response", "assessment", Categorical(RESPONSES)),
    Observable("relapse", "relapse", "assessment", Categorical(RELAPSES)),
    Observable("bleeding", "clinical bleeding", "assessment", Categorical(YES_NO)),
    Observable("dialysis", "dialysis", "assessment", Categorical(YES_NO)),
    Observable("splenomegaly", "splenomegaly", "assessment", Categorical(YES_NO)),
    Observable("hemophagocytosis", "hemophagocytosis", "assessment", Categorical(YES_NO)),
    Observable("nk_activity_low", "low NK-cell activity", "assessment", Categorical(YES_NO)),
    Observable("familial_hlh", "familial HLH", "assessment", Categorical(YES_NO)),
    Observable("toxicity", "toxicity grade (CTCAE)", "assessment", Categorical(GRADES)),
    Observable("etoposide_indicated", "etoposide indicated", "assessment", Categorical(YES_NO)),
    Observable("sample_timing", "sample timing", "assessment", Categorical(TIMINGS)),
    Observable("life_threatening", "life-threatening disease", "assessment", Categorical(YES_NO)),
    # The eligibility criteria that are not lab values (pregnancy, performance status, other
    # diagnoses ...), confirmed by the clinician; each protocol's start message lists them.
    Observable(
        "eligibility_confirmed",
        "other eligibility criteria met",
        "assessment",
        Categorical(YES_NO),
    ),
    Observable(
        "renal_function_adequate",
        "CrCl >= 15 mL/min or on dialysis (clinician's assessment)",
        "assessment",
        Categorical(YES_NO),
    ),
)  # fmt: skip

VOCABULARY: dict[str, Observable] = {entry.name: entry for entry in _ENTRIES}
_BY_ALIAS: dict[str, Observable] = {code: e for e in _ENTRIES for code in e.loinc}


def by_loinc(code: str) -> Observable | None:
    """The vocabulary entry a LOINC code names, if any (a name is not a code here)."""
    return _BY_ALIAS.get(code)


_YES_NO_SPELLINGS = {"y": "yes", "true": "yes", "1": "yes", "n": "no", "false": "no", "0": "no"}


def observable(name: str) -> Observable:
    """The vocabulary entry for a name or LOINC code; unknown names get a did-you-mean."""
    key = name.strip()
    found = VOCABULARY.get(key.lower()) or _BY_ALIAS.get(key)
    if found is not None:
        return found
    foreign = _foreign(key)
    if foreign:
        key = ascii_lookalike(key)
    close = difflib.get_close_matches(key.lower(), list(VOCABULARY), n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ObservationError(
        f"unknown observation '{shown(name)}'{foreign}{hint}; known: {', '.join(VOCABULARY)} "
        "(or a LOINC code)"
    )


def _foreign(text: str) -> str:
    """': U+0430 CYRILLIC SMALL LETTER A looks like ...' for a name that is not all ASCII."""
    index = first_foreign(text)
    return "" if index is None else f": {foreign(text[index])}"


def category_value(entry: Observable, text: str) -> str:
    """An answer to a categorical observation, normalized, or a message listing the answers."""
    assert isinstance(entry.measure, Categorical)
    allowed = entry.measure.values
    answer = text.strip()
    for value in allowed:
        if answer.lower() == value.lower():
            return value
    if allowed == YES_NO and answer.lower() in _YES_NO_SPELLINGS:
        return _YES_NO_SPELLINGS[answer.lower()]
    raise ObservationError(
        f"{entry.name}: '{shown(text)}' is not an accepted answer{_foreign(answer)}; "
        f"accepted: {', '.join(allowed)}"
    )
