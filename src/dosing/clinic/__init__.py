"""The clinic: the patient store (SQLite), the visit conversation at the prompt, saving a
visit, corrections, due dates and history.

Imports replay, verify, render, fhir, the engine and below.
"""
