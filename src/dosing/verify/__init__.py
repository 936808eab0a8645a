"""Proving a protocol before it touches a patient: `dosing check` (load-time checks, scenarios,
label invariants and the search for counterexamples), mutation testing, and their report.

Imports render, the engine and below.
"""
