"""Rendering that knows no command: the rich console, the decision panel and the course
tables, used by every way of working and by the CLI.

Imports the engine and below.
"""
