"""FHIR test data: CSV timelines turned into Bundles as a lab system exports them, and the
same labs as CSV with the dosing spelling of each UCUM unit (so the two must decide alike)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from dosing.core.units import unit_spelling
from dosing.core.vocabulary import VOCABULARY, Categorical
from dosing.fhir.codes import LOINC, SPELLING_UCUM, UCUM, UCUM_SPELLINGS, VOCABULARY_SYSTEM

NOT_IN_FHIR = frozenset({"dose_given", "start_state", "therapy_start"})
YES_NO = "http://terminology.hl7.org/CodeSystem/v2-0136"


def long_rows(path: Path) -> list[dict[str, str]]:
    """A long-format timeline's rows (either delimiter), without what FHIR does not carry."""
    text = path.read_text(encoding="utf-8")
    delimiter = ";" if text.splitlines()[0].count(";") > text.splitlines()[0].count(",") else ","
    rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
    return [row for row in rows if row["name"] not in NOT_IN_FHIR]


def ucum_of(unit: str) -> str:
    """The UCUM code of a unit as typed in a CSV."""
    return SPELLING_UCUM[unit_spelling(unit)]


def as_typed_csv(rows: Iterable[dict[str, str]]) -> str:
    """The rows as a long CSV whose units are the dosing spellings of their UCUM codes: the
    same labs a FHIR export carries, as a person would type them."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("patient_id", "date", "name", "value", "unit"))
    for row in rows:
        unit = row["unit"].strip()
        spelled = UCUM_SPELLINGS[ucum_of(unit)] if unit else ""
        writer.writerow((row["patient_id"], row["date"], row["name"], row["value"], spelled))
    return out.getvalue()


def _urn(*parts: object) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, '|'.join(map(str, parts)))}"


def _code(name: str) -> dict[str, Any]:
    entry = VOCABULARY[name]
    if entry.loinc:
        coding = {"system": LOINC, "code": entry.loinc[0], "display": f"{entry.label} (LOINC)"}
    else:
        coding = {"system": VOCABULARY_SYSTEM, "code": name, "display": entry.label}
    return {"coding": [coding], "text": entry.label}


def observation(
    name: str,
    value: str,
    unit: str,
    drawn: str,
    subject: str,
    status: str = "final",
    number: int = 0,
) -> dict[str, Any]:
    """An Observation as a laboratory information system writes it."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:oid:1.2.3.4.5.6", "value": f"ACC{number:06d}"}],
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                        "display": "Laboratory",
                    }
                ]
            }
        ],
        "code": _code(name),
        "subject": {"reference": subject},
        "effectiveDateTime": f"{drawn}T07:{number // 60 % 60:02d}:{number % 60:02d}+01:00",
        "issued": f"{drawn}T11:42:07.381+01:00",
        "performer": [{"display": "Central laboratory"}],
    }
    if isinstance(VOCABULARY[name].measure, Categorical):
        if value in ("yes", "no"):
            code = "Y" if value == "yes" else "N"
            resource["valueCodeableConcept"] = {
                "coding": [{"system": YES_NO, "code": code, "display": value.capitalize()}],
                "text": value,
            }
        else:
            resource["valueCodeableConcept"] = {
                "coding": [{"system": VOCABULARY_SYSTEM, "code": value}],
                "text": value,
            }
    else:
        code = ucum_of(unit or "years")
        resource["valueQuantity"] = {
            "value": Decimal(value),
            "unit": unit or "years",
            "system": UCUM,
            "code": code,
        }
        resource["interpretation"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": "N",
                    }
                ]
            }
        ]
    return resource


def patient(patient_id: str, sex: str | None, birth: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": "urn:oid:1.2.3.4.5.7", "value": f"MRN-{patient_id}"}],
        "name": [{"family": "Testpatient", "given": [patient_id]}],
        "active": True,
    }
    if sex is not None:
        resource["gender"] = {"F": "female", "M": "male"}[sex]
    if birth is not None:
        resource["birthDate"] = birth
    return resource


def lab_bundle(rows: list[dict[str, str]], births: dict[str, str] | None = None) -> dict[str, Any]:
    """The rows as a lab system's export: a collection with each Patient (sex from the rows'
    sex, as the demographics carry it) under a urn:uuid, Observations referring to it, and a
    report and a sodium that dosing does not read."""
    births = births or {}
    sexes = {row["patient_id"]: row["value"] for row in rows if row["name"] == "sex"}
    patients = list(dict.fromkeys(row["patient_id"] for row in rows))
    entries: list[dict[str, Any]] = []
    for patient_id in patients:
        entries.append(
            {
                "fullUrl": _urn("patient", patient_id),
                "resource": patient(patient_id, sexes.get(patient_id), births.get(patient_id)),
            }
        )
    for number, row in enumerate(rows):
        if row["name"] == "sex":
            continue
        subject = _urn("patient", row["patient_id"])
        resource = observation(
            row["name"], row["value"], row["unit"].strip(), row["date"], subject, number=number
        )
        entries.append({"fullUrl": _urn("obs", number), "resource": resource})
    first = rows[0]
    entries.append(
        {
            "fullUrl": _urn("sodium"),
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "2951-2", "display": "Sodium"}]},
                "subject": {"reference": _urn("patient", first["patient_id"])},
                "effectiveDateTime": first["date"],
                "valueQuantity": {"value": 140, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
            },
        }
    )
    entries.append(
        {
            "fullUrl": _urn("report"),
            "resource": {
                "resourceType": "DiagnosticReport",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "58410-2", "display": "CBC panel"}]},
                "subject": {"reference": _urn("patient", first["patient_id"])},
            },
        }
    )
    return {
        "resourceType": "Bundle",
        "id": "lab-export-1",
        "meta": {"lastUpdated": "2026-11-22T12:00:00+01:00"},
        "type": "collection",
        "timestamp": "2026-11-22T12:00:00+01:00",
        "entry": entries,
    }


def dumps(document: Any) -> str:
    """JSON as a FHIR server writes it: decimals exactly as they are (1.20 stays 1.20)."""
    # json cannot write a Decimal as a bare number: write a marker, then unquote it.
    text = json.dumps(document, default=lambda v: f"@@{v}@@" if isinstance(v, Decimal) else v)
    return text.replace('"@@', "").replace('@@"', "")


def today_iso(days_ago: int = 0) -> str:
    return (dt.date.today() - dt.timedelta(days=days_ago)).isoformat()
