"""A protocol: the model, the guard language (parser, evaluation, interval analysis), the
loader that reads a YAML file into the model (in stages, one builder per section), the checks
made at load time, the catalog of shipped protocols with its compile cache, the JSON schema and
the diagram.

Imports only `dosing.core`; never rich, typer, sqlite3 or matplotlib.
"""
