"""Facts with no protocol in them: units and exact quantities, the lab vocabulary, derived
formulas (BSA, CrCl), the error types, and strict readers of bytes, text and JSON.

The bottom layer: it imports nothing else from `dosing`, and never rich, typer, sqlite3 or
matplotlib.
"""
