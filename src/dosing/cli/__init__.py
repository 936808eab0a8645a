"""The `dosing` command: the typer app, one module per group of commands, turning the
library's errors into short messages and exit codes.

The top layer: it may import any package; none imports it.
"""
