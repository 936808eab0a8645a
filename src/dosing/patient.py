"""Where a patient stands between visits: the engine's input and output, nothing more."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from fractions import Fraction

import attrs

from dosing.observations import Observation


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
