"""FHIR R4 input: a Bundle of Observations (and Patients) read into results dosing can dose on.

Every field dosing uses is read strictly, from the JSON itself (where a number is still the
decimal the lab wrote: `strict_json` never makes it a float), with its type checked, whatever
the document holds. With `validate` (the default: `dosing step --fhir`, replay, import), each
resource is first checked whole against the FHIR models of the `fhir` extra (fhir.resources:
R4B, whose Bundle, Observation and Patient are R4's), so an element dosing does not use is
refused too when it is malformed. The CDS Hooks service reads without that check: it costs
about 0.3 ms per resource, some 4 ms a call, more than its latency target allows.

Every problem names its JSON path (`entry[3].resource.valueQuantity.code`) and what is
accepted. A bad entry is reported and left out; the other entries are kept.

The module is longer than most (about 590 lines) because it is one strict reader: each
function reads one FHIR element (the bundle, an entry, its subject, date, code, value) and
they share one path-addressed refusal; split, the path of an error would run across files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import attrs

from dosing.core.errors import DosingError
from dosing.core.vocabulary import (
    VOCABULARY,
    YES_NO,
    Categorical,
    Observable,
    by_loinc,
    category_value,
)
from dosing.engine.patient import FIRST_DATE, LAST_DATE
from dosing.fhir.codes import (
    DOSED_ON,
    LOINC,
    UCUM,
    UCUM_SPELLINGS,
    VOCABULARY_SYSTEM,
    YES_NO_CODES,
)

EXTRA_MISSING = (
    "reading FHIR needs the fhir extra: pip install 'dosing[fhir]' (or '.[fhir]' in a checkout)"
)


class FhirError(DosingError):
    """A FHIR document dosing cannot read at all (not a Bundle, Observation or Patient)."""


@attrs.frozen
class Result:
    """One Observation dosing reads: its value as the observation reader takes it."""

    path: str
    """Where the resource is: 'entry[3].resource'."""
    patient: str
    """The patient's key (Patient.id, or the subject reference); '' when none is named."""
    name: str
    text: str
    """'1.20 10*9/L', 'yes': a decimal as written and a dosing unit spelling, or an answer."""
    value_path: str
    """Where the value is: 'entry[3].resource.valueQuantity'."""
    drawn_on: dt.date
    order: tuple[float, int]
    """Sorts results drawn on one day: the instant (UTC seconds, 0 if only a date), then the
    entry's place in the document."""
    status: str

    @property
    def dosed_on(self) -> bool:
        return self.status in DOSED_ON


@attrs.frozen
class PatientFacts:
    """What a Patient resource tells: the birth date and the sex the protocols read."""

    key: str
    path: str
    birth_date: dt.date | None
    sex: str | None
    """'F' or 'M'; None for another or an unknown gender."""


@attrs.frozen
class Problem:
    """An entry that could not be read, with its JSON path and what was expected."""

    path: str
    message: str
    patient: str = ""
    drawn_on: dt.date | None = None
    order: int = 0

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@attrs.define
class FhirLabs:
    """What a document holds for dosing: patients, results and the entries refused."""

    patients: dict[str, PatientFacts] = attrs.Factory(dict)
    results: list[Result] = attrs.Factory(list)
    problems: list[Problem] = attrs.Factory(list)
    ignored: int = 0
    """Observations of things dosing does not read (a sodium, a lipase)."""

    def extend(self, other: FhirLabs) -> None:
        self.patients.update(other.patients)
        self.results.extend(other.results)
        self.problems.extend(other.problems)
        self.ignored += other.ignored


def read_document(document: Any, where: str = "", validate: bool = True) -> FhirLabs:
    """Read a Bundle, an Observation or a Patient (JSON already parsed by strict_json).

    `where` prefixes every path ('prefetch.anc'). Raises FhirError when the document is none
    of those or its Bundle structure is broken; a bad entry is a Problem, the rest is kept.
    `validate` checks each resource against the FHIR models first (needs the fhir extra)."""
    if validate:
        try:
            import fhir.resources.R4B  # noqa: F401
        except ImportError:
            raise FhirError(EXTRA_MISSING) from None
    prefix = f"{where}." if where else ""
    kind = document.get("resourceType") if isinstance(document, dict) else None
    if kind in _MODELS:
        labs = FhirLabs()
        _read_entries(labs, [(f"{where or kind}", document, None)], validate)
        return labs
    if kind != "Bundle":
        found = f"resourceType '{kind}'" if isinstance(kind, str) else _shape(document)
        raise FhirError(
            f"{where or 'the document'}: expected a FHIR Bundle, Observation or Patient; "
            f"found {found}"
        )
    entries = document.get("entry", [])
    problems = _check_bundle(document, entries, where) if validate else []
    if not isinstance(entries, list):
        problems.append(Problem(f"{prefix}entry", f"expected a list; found {_shape(entries)}"))
    if problems:
        raise FhirError("; ".join(str(problem) for problem in problems[:5]))
    located = []
    for index, entry in enumerate(entries):
        path = f"{prefix}entry[{index}]"
        if not isinstance(entry, dict):
            raise FhirError(f"{path}: expected an entry object; found {_shape(entry)}")
        resource = entry.get("resource")
        if resource is None:
            continue
        full_url = entry.get("fullUrl")
        located.append(
            (f"{path}.resource", resource, full_url if isinstance(full_url, str) else None)
        )
    labs = FhirLabs()
    _read_entries(labs, located, validate)
    return labs


def _check_bundle(document: dict[str, Any], entries: Any, where: str) -> list[Problem]:
    """The Bundle's own structure checked by the model, its entries' resources left out (each
    is checked by its own model: the library raised KeyError on an unknown resourceType)."""
    from fhir.resources.R4B.bundle import Bundle

    shell = {key: value for key, value in document.items() if key != "entry"}
    shell["entry"] = entries
    if isinstance(entries, list):
        shell["entry"] = [
            {k: v for k, v in entry.items() if k != "resource"}
            if isinstance(entry, dict)
            else entry
            for entry in entries
        ]
    return _check(Bundle, shell, where)


_MODELS = ("Observation", "Patient")


def _shape(value: Any) -> str:
    if isinstance(value, dict):
        return "an object" + ("" if "resourceType" in value else " without a resourceType")
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, int | Decimal):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string '{value[:40]}'"
    return "null" if value is None else f"a JSON {type(value).__name__}"


def _model(kind: str) -> Any:
    if kind == "Observation":
        from fhir.resources.R4B.observation import Observation

        return Observation
    from fhir.resources.R4B.patient import Patient

    return Patient


def _check(model: Any, document: dict[str, Any], where: str) -> list[Problem]:
    """The model's complaints about `document`, each with its JSON path."""
    from pydantic import ValidationError

    try:
        model.model_validate(document)
    except ValidationError as error:
        return [
            Problem(_path(where, err["loc"]), _expected(err["msg"], err.get("input")))
            for err in error.errors()
        ]
    except Exception as error:  # the library fails this way on some malformed input
        return [
            Problem(where or "the document", f"not a valid FHIR resource ({type(error).__name__})")
        ]
    return []


def _path(where: str, loc: tuple[int | str, ...]) -> str:
    text = where
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part not in ("root", "resource_type"):
            text += f".{part}" if text else str(part)
        elif part == "resource_type":
            text += ".resourceType" if text else "resourceType"
    return text or "the document"


def _expected(message: str, value: Any) -> str:
    message = message.removeprefix("Value error, ").rstrip(".")
    message = " ".join(message.split())
    if isinstance(value, dict | list) or value is None:
        return message
    shown = repr(value) if not isinstance(value, Decimal) else str(value)
    return f"{message} (found {shown[:60]})"


def _read_entries(
    labs: FhirLabs, located: list[tuple[str, Any, str | None]], validate: bool
) -> None:
    """Patients first (observations name them), then observations; a bad entry is a Problem
    dated and attributed as well as its own JSON allows, so a replay stops where it belongs."""
    references: dict[str, str] = {}
    observations: list[tuple[int, str, dict[str, Any], list[Problem]]] = []
    for index, (path, resource, full_url) in enumerate(located):
        if not isinstance(resource, dict):
            labs.problems.append(
                Problem(path, f"expected a resource object; found {_shape(resource)}", order=index)
            )
            continue
        kind = resource.get("resourceType")
        if kind not in _MODELS:
            if not isinstance(kind, str):
                labs.problems.append(
                    Problem(path, "a resource without a resourceType", order=index)
                )
            continue  # other resources (a DiagnosticReport, a Specimen) are not read
        problems = _check(_model(kind), resource, path) if validate else []
        if kind == "Observation":
            observations.append((index, path, resource, problems))
            continue
        if problems:
            key = str(resource["id"]) if isinstance(resource.get("id"), str) else ""
            labs.problems.extend(attrs.evolve(p, patient=key, order=index) for p in problems)
            continue
        try:
            facts = _patient(resource, path, full_url, index)
        except _Refused as refused:
            key = str(resource["id"]) if isinstance(resource.get("id"), str) else ""
            labs.problems.append(Problem(refused.path, refused.message, key, order=index))
            continue
        labs.patients[facts.key] = facts
        for alias in (full_url, f"Patient/{facts.key}"):
            if alias:
                references[alias] = facts.key
    for index, path, resource, problems in observations:
        if not problems:
            _observation(labs, resource, path, index, references)
            continue
        patient, drawn_on = "", None
        with contextlib.suppress(Exception):  # best effort: the resource is malformed
            patient = _subject(resource, references, len(labs.patients))
            drawn_on = _effective(resource, path)[0]
        labs.problems.extend(
            attrs.evolve(p, patient=patient, drawn_on=drawn_on, order=index) for p in problems
        )


_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_INSTANT = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})T([0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?)"
    r"(Z|[+-][0-9]{2}:[0-9]{2})?"
)


def _day(text: str, path: str, what: str) -> dt.date:
    """The calendar day of a FHIR date or dateTime, as written (the clinic's local day)."""
    match = _DATE.match(text)
    if match is None:
        raise _Refused(path, f"'{text}' gives no day; {what} needs a full date (YYYY-MM-DD)")
    try:
        day = dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        raise _Refused(path, f"'{text}' is not a date") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise _Refused(
            path, f"'{text}' is not a plausible date (expected {FIRST_DATE.year}-{LAST_DATE.year})"
        )
    return day


class _Refused(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _patient(resource: dict[str, Any], path: str, full_url: str | None, index: int) -> PatientFacts:
    identifier = _optional(resource, "id", str, path)
    key = identifier or full_url or f"patient-{index}"
    birth = _optional(resource, "birthDate", str, path)
    born = _day(birth, f"{path}.birthDate", "an age") if birth is not None else None
    gender = _optional(resource, "gender", str, path)
    if gender is not None and gender not in _GENDERS:
        raise _Refused(
            f"{path}.gender",
            f"'{gender}' is not a FHIR gender; expected male, female, other or unknown",
        )
    return PatientFacts(key, path, born, _GENDERS.get(gender or "unknown"))


_GENDERS = {"female": "F", "male": "M", "other": None, "unknown": None}


_TYPES = {dict: "an object", list: "a list", str: "a string", bool: "true or false"}


def _optional(parent: dict[str, Any], key: str, kind: type, path: str) -> Any:
    """parent[key] if it is there (None if not), refused unless it is of `kind`."""
    value = parent.get(key)
    if value is None or isinstance(value, kind):
        return value
    raise _Refused(f"{path}.{key}", f"expected {_TYPES[kind]}; found {_shape(value)}")


def _object(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = _optional(parent, key, dict, path) or {}
    return found


def _items(parent: dict[str, Any], key: str, path: str) -> list[tuple[str, dict[str, Any]]]:
    """The objects of a list element, each with its path."""
    items: list[Any] = _optional(parent, key, list, path) or []
    found = []
    for number, item in enumerate(items):
        where = f"{path}.{key}[{number}]"
        if not isinstance(item, dict):
            raise _Refused(where, f"expected an object; found {_shape(item)}")
        found.append((where, item))
    return found


def _observation(
    labs: FhirLabs, resource: dict[str, Any], path: str, index: int, references: dict[str, str]
) -> None:
    patient, drawn_on = "", None
    try:
        entry = _observable(_object(resource, "code", path), f"{path}.code")
        if entry is None:
            labs.ignored += 1
            return
        patient = _subject(resource, references, len(labs.patients))
        status = _optional(resource, "status", str, path)
        if status is None:
            raise _Refused(f"{path}.status", "missing; expected final, amended or corrected")
        drawn_on, instant = _effective(resource, path)
        text, value_path = _value(entry, resource, path, status in DOSED_ON)
    except _Refused as refused:
        labs.problems.append(Problem(refused.path, refused.message, patient, drawn_on, index))
        return
    labs.results.append(
        Result(path, patient, entry.name, text, value_path, drawn_on, (instant, index), status)
    )


def _observable(code: dict[str, Any], path: str) -> Observable | None:
    """The vocabulary entry an Observation.code names (None: nothing dosing reads)."""
    found: dict[str, Observable] = {}
    for where, coding in _items(code, "coding", path):
        system = _optional(coding, "system", str, where)
        value = _optional(coding, "code", str, where)
        entry = None
        if system == LOINC and value is not None:
            entry = by_loinc(value)
        elif system == VOCABULARY_SYSTEM:
            entry = VOCABULARY.get(value or "")
            if entry is None:
                raise _Refused(
                    f"{where}.code",
                    f"'{value}' is not in the dosing vocabulary; known: {', '.join(VOCABULARY)}",
                )
        if entry is not None:
            found[entry.name] = entry
    if len(found) > 1:
        raise _Refused(path, f"the codings name different observations: {', '.join(found)}")
    return next(iter(found.values()), None)


def _subject(resource: dict[str, Any], references: dict[str, str], patients: int) -> str:
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str):
        return next(iter(references.values()), "") if patients == 1 else ""
    if reference in references:
        return references[reference]
    kind, _, identifier = reference.rstrip("/").rpartition("/")
    return identifier if kind.endswith("Patient") and identifier else reference


def _effective(resource: dict[str, Any], path: str) -> tuple[dt.date, float]:
    """The draw date (as written) and the instant, for ordering results of one day."""
    for key in ("effectiveDateTime", "effectiveInstant"):
        text = _optional(resource, key, str, path)
        if text is not None:
            where = f"{path}.{key}"
            break
    else:
        period = _object(resource, "effectivePeriod", path)
        text = _optional(period, "start", str, f"{path}.effectivePeriod")
        if text is None:
            raise _Refused(
                f"{path}.effectiveDateTime",
                "missing; the draw date is needed (effectiveDateTime or effectivePeriod.start)",
            )
        where = f"{path}.effectivePeriod.start"
    day = _day(text, where, "the draw date")
    match = _INSTANT.fullmatch(text)
    if match is None or match.group(3) is None:
        return day, 0.0
    zone = match.group(3).replace("Z", "+00:00")
    try:
        moment = dt.datetime.fromisoformat(f"{match.group(1)}T{match.group(2)}{zone}")
    except ValueError:
        raise _Refused(where, f"'{text}' is not a date and time") from None
    return day, moment.timestamp()


def _value(
    entry: Observable, resource: dict[str, Any], path: str, dosed_on: bool
) -> tuple[str, str]:
    """The value as the observation reader takes it, and where it is."""
    categorical = isinstance(entry.measure, Categorical)
    values = [key for key in resource if key.startswith("value")]
    if len(values) > 1:
        raise _Refused(path, f"more than one value ({', '.join(values)}); expected one")
    if "valueQuantity" in resource:
        where = f"{path}.valueQuantity"
        if categorical:
            raise _Refused(where, f"{entry.name} is an answer ({_answers(entry)}), not a quantity")
        return _quantity(_object(resource, "valueQuantity", path), where), where
    if "valueBoolean" in resource:
        where = f"{path}.valueBoolean"
        answer = _optional(resource, "valueBoolean", bool, path)
        if not categorical or _answers_of(entry) != YES_NO:
            raise _Refused(
                where, f"{entry.name} is not a yes/no answer; expected {_expected_value(entry)}"
            )
        return ("yes" if answer else "no"), where
    if "valueCodeableConcept" in resource:
        where = f"{path}.valueCodeableConcept"
        if not categorical:
            raise _Refused(
                where, f"{entry.name} is measured; expected valueQuantity with a UCUM code"
            )
        return _answer(entry, _object(resource, "valueCodeableConcept", path), where), where
    if values:
        raise _Refused(
            f"{path}.{values[0]}", f"{values[0]} is not read; expected {_expected_value(entry)}"
        )
    if not dosed_on:
        return "", f"{path}.value"
    reason = _object(resource, "dataAbsentReason", path)
    why = next(
        (c.get("code") for _, c in _items(reason, "coding", f"{path}.dataAbsentReason")
         if isinstance(c.get("code"), str)),
        None,
    )  # fmt: skip
    raise _Refused(
        f"{path}.value",
        f"no value{f' (dataAbsentReason {why})' if why else ''}; expected {_expected_value(entry)}",
    )


def _answers_of(entry: Observable) -> tuple[str, ...]:
    assert isinstance(entry.measure, Categorical)
    return entry.measure.values


def _answers(entry: Observable) -> str:
    return ", ".join(_answers_of(entry))


def _expected_value(entry: Observable) -> str:
    if not isinstance(entry.measure, Categorical):
        return "valueQuantity with a UCUM code"
    yes_no = " or valueBoolean" if _answers_of(entry) == YES_NO else ""
    return f"valueCodeableConcept ({_answers(entry)}){yes_no}"


def _quantity(quantity: dict[str, Any], where: str) -> str:
    value = quantity.get("value")
    comparator = _optional(quantity, "comparator", str, where)
    if comparator is not None:
        shown = _number(value, where) if value is not None else ""
        raise _Refused(
            f"{where}.comparator",
            f"'{comparator}{shown}' is a bound, not a result: dosing doses only on exact values",
        )
    if value is None:
        raise _Refused(f"{where}.value", "missing; expected a number")
    number = _number(value, where)
    system = _optional(quantity, "system", str, where)
    code = _optional(quantity, "code", str, where)
    if code is None:
        raise _Refused(
            f"{where}.code", f"missing; expected a UCUM code ({', '.join(UCUM_SPELLINGS)})"
        )
    if system != UCUM:
        raise _Refused(f"{where}.system", f"'{system}': expected {UCUM} (UCUM)")
    spelling = UCUM_SPELLINGS.get(code)
    if spelling is None:
        raise _Refused(
            f"{where}.code",
            f"'{code}' is not a UCUM unit dosing reads; accepted: {', '.join(UCUM_SPELLINGS)}",
        )
    return f"{number} {spelling}"


def _number(value: Any, where: str) -> str:
    """The decimal exactly as written: '1.20' stays 1.20, '1e3' is 1000."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _Refused(f"{where}.value", f"{value!r} is not a JSON number")
    if isinstance(value, int):
        return str(value)
    if not value.is_finite():
        raise _Refused(f"{where}.value", f"{value} is not a number")
    return format(value, "f")


def _answer(entry: Observable, concept: dict[str, Any], where: str) -> str:
    allowed = _answers_of(entry)
    for path, coding in _items(concept, "coding", where):
        system = _optional(coding, "system", str, path)
        code = _optional(coding, "code", str, path)
        if system == VOCABULARY_SYSTEM:
            if code in allowed:
                return str(code)
            raise _Refused(
                f"{path}.code",
                f"'{code}' is not an answer for {entry.name}; accepted: {_answers(entry)}",
            )
        if allowed == YES_NO and (system, code) in YES_NO_CODES:
            return YES_NO_CODES[(system, code)]
    text = _optional(concept, "text", str, where)
    if text is not None:
        try:
            return category_value(entry, text)
        except DosingError as error:
            raise _Refused(f"{where}.text", str(error)) from None
    raise _Refused(
        where,
        f"no coding dosing reads; expected a {VOCABULARY_SYSTEM} code ({_answers(entry)})"
        + (", a yes/no code (HL7 v2-0136 Y/N, SNOMED CT)" if allowed == YES_NO else ""),
    )


def results_in_order(labs: FhirLabs) -> Iterator[Result]:
    """The results by draw date, then instant, then place in the document."""
    yield from sorted(labs.results, key=lambda result: (result.drawn_on, result.order))
