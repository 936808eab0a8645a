"""`dosing serve`: a CDS Hooks 2.0 service (the `service` extra): discovery, cards, JWT
authentication, fetching labs from the EHR's FHIR server, and feedback kept in the patient
store.

Imports the clinic and below.
"""
