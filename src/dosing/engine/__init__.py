"""One visit, decided: the patient's record and observations, the step through the protocol's
state machine, the decision with its reasons and margins, and the clinician's choice among the
advised doses.

Pure: no files, no printing. Imports only `dosing.protocol` and `dosing.core`; never rich,
typer, sqlite3 or matplotlib.
"""
