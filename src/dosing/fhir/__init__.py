"""FHIR R4 as data: the LOINC and UCUM codes, a Bundle of Observations read into exact
results, and a decision written as MedicationRequest and Observation resources.

Imports the engine and below; the FHIR models (the `fhir` extra) are loaded only when a
Bundle is read.
"""
