"""Where a patient stands between visits: the engine's input and output, nothing more."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from fractions import Fraction

import attrs

from dosing.engine.observations import Observation

FIRST_DATE = dt.date(1901, 1, 1)
LAST_DATE = dt.date(2199, 12, 31)
"""Dates of a course outside these are placeholders (lab exports write 9999-12-31 or
1900-01-01 for 'none'), never visits; and the engine could not date a next check after them."""
PLACEHOLDER = (
    "not a plausible visit date (placeholders such as 9999-12-31 and 1900-01-01 are not "
    f"visits); expected a date from {FIRST_DATE.year} to {LAST_DATE.year}"
)


@attrs.frozen
class PatientRecord:
    """A patient's place in a protocol; the engine returns the next one after each visit."""

    state: str | None = None
    """None before the first visit: the protocol's initial state."""
    state_since: dt.date | None = None
    therapy_started_on: dt.date | None = None
    dose_since: dt.date | None = None
    """When the current dose was started, increased, decreased or resumed."""
    memory: Mapping[str, Fraction | str] = attrs.Factory(dict)
    observations: Mapping[str, Observation] = attrs.Factory(dict)
    """The latest value of each observation, with the date it was drawn."""
