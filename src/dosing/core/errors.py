"""The small, named errors the core raises; the CLI turns them into one-line messages.

Messages name the lab, the value and what is accepted, never more patient data than the
value being complained about.
"""


class DosingError(Exception):
    """Base of every error `dosing` reports to a user instead of a traceback."""


class Cancelled(DosingError):
    """The user interrupted (Ctrl-C, end of input); the message says what was kept."""


class UnitError(DosingError):
    """A value's unit is missing, unknown, ambiguous or of the wrong kind."""


class ObservationError(DosingError):
    """An observation is malformed, unknown or implausible."""


class ProtocolError(DosingError):
    """A protocol file cannot be read, or fails a load-time check."""


class GuardSyntaxError(ProtocolError):
    """A guard expression does not parse."""


class EngineError(DosingError):
    """The engine cannot decide from what it was given (for example, conflicting rules)."""


class TimelineError(DosingError):
    """A timeline file cannot be read at all (no header, unknown columns)."""


class OutputError(DosingError):
    """A result cannot be written where it was asked to go (a directory, no such folder, no
    permission, a full disk)."""
