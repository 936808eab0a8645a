"""Replay: reading a timeline (CSV or FHIR), stepping every patient through it, writing the
decisions (table, CSV, JSON lines), plotting a course, and the diff of two protocols over the
same timeline.

Imports render, fhir, the engine and below.
"""
