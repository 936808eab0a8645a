"""The codes dosing speaks in FHIR: code systems, UCUM units, result statuses, dose timings.

Pure data, no FHIR library: `dosing step --format fhir` writes FHIR without the `fhir` extra.
"""

from __future__ import annotations

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VOCABULARY_SYSTEM = "urn:dosing:observation"
"""dosing's own code system for what LOINC does not code (the clinician's assessments, sIL-2R):
the code is the vocabulary name (`bleeding`, `eligibility_confirmed`), the answers in
valueCodeableConcept are the vocabulary's answers (`yes`, `complete`)."""
DECISION_EXTENSION = "urn:dosing:decision-record"
"""Extension whose valueString is the decision record, JSON as `dosing step --json` prints it."""
RESPONSE_EXTENSION = "urn:dosing:clinician-response"
"""Extension whose valueString is the clinician's answer to a stored decision (JSON)."""
YES_NO_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0136"
SNOMED = "http://snomed.info/sct"
YES_NO_CODES = {
    (YES_NO_SYSTEM, "Y"): "yes",
    (YES_NO_SYSTEM, "N"): "no",
    (SNOMED, "373066001"): "yes",
    (SNOMED, "373067005"): "no",
}
"""The standard codings of a yes/no answer (HL7 v2 table 0136; SNOMED CT Yes/No)."""

DOSED_ON = frozenset({"final", "amended", "corrected"})
"""Observation statuses a dose may be decided from; any other (preliminary, registered,
cancelled, entered-in-error, unknown) is not dosed on, and the decision says so."""

UCUM_SPELLINGS: dict[str, str] = {
    "10*9/L": "10*9/L",
    "10*3/uL": "10^3/uL",
    "/uL": "/uL",
    "{cells}/uL": "cells/uL",
    "/mm3": "/mm3",
    "[IU]/L": "IU/L",
    "U/L": "U/L",
    "U/mL": "U/mL",
    "mg/dL": "mg/dL",
    "umol/L": "umol/L",
    "ng/mL": "ng/mL",
    "ug/L": "ug/L",
    "pg/mL": "pg/mL",
    "nmol/L": "nmol/L",
    "g/dL": "g/dL",
    "g/L": "g/L",
    "mg/L": "mg/L",
    "mmol/L": "mmol/L",
    "mL/min": "mL/min",
    "Cel": "degC",
    "kg": "kg",
    "cm": "cm",
    "m": "m",
    "[lb_av]": "lb",
    "[in_i]": "in",
    "a": "years",
    "mo": "months",
    "wk": "weeks",
    "d": "days",
}
"""UCUM codes (case-sensitive, exactly as UCUM writes them) and the dosing spelling each is
read as. A code not here is refused; the dimension is then checked as for typed input."""

SPELLING_UCUM: dict[str, str] = {
    "x10^9/L": "10*9/L",
    "10^9/L": "10*9/L",
    "10*9/L": "10*9/L",
    "G/L": "10*9/L",
    "10^3/uL": "10*3/uL",
    "K/uL": "10*3/uL",
    "/mm3": "/mm3",
    "/uL": "/uL",
    "cells/uL": "{cells}/uL",
    "U/L": "U/L",
    "IU/L": "[IU]/L",
    "U/mL": "U/mL",
    "ng/mL": "ng/mL",
    "ug/L": "ug/L",
    "µg/L": "ug/L",
    "pg/mL": "pg/mL",
    "nmol/L": "nmol/L",
    "mg/dL": "mg/dL",
    "umol/L": "umol/L",
    "µmol/L": "umol/L",
    "g/dL": "g/dL",
    "g/L": "g/L",
    "mg/L": "mg/L",
    "mmol/L": "mmol/L",
    "mL/min": "mL/min",
    "degC": "Cel",
    "°C": "Cel",
    "kg": "kg",
    "lb": "[lb_av]",
    "cm": "cm",
    "m": "m",
    "in": "[in_i]",
    "m^2": "m2",
    "mg": "mg",
    "mg/m^2": "mg/m2",
    "years": "a",
    "months": "mo",
    "weeks": "wk",
    "days": "d",
}
"""Each known dosing spelling (units.KNOWN_SPELLINGS) as a UCUM code, for FHIR output."""

GTS_ABBREVIATION = "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
TIMINGS: dict[str, tuple[str, bool, dict[str, int | str]]] = {
    "qd": ("QD", True, {"frequency": 1, "period": 1, "periodUnit": "d"}),
    "bid": ("BID", True, {"frequency": 2, "period": 1, "periodUnit": "d"}),
    # QOD is in the code system but on the lists of error-prone abbreviations (read as QD):
    # every other day is written Q48H, which the code system lacks, so it is the timing's
    # text, and the repeat (every 2 days) carries the meaning.
    "qod": ("Q48H", False, {"frequency": 1, "period": 2, "periodUnit": "d"}),
    "weekly": ("WK", True, {"frequency": 1, "period": 1, "periodUnit": "wk"}),
}
"""Per dosing frequency: the timing code, whether GTSAbbreviation defines it, the repeat."""
