"""The protocol as the engine sees it: frozen, checked, with guards bound and units exact.

This is the domain model; the file format lives in `protocol_file`, which builds these.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Literal

import attrs

from dosing.core.units import Conversion
from dosing.protocol.guards import Guard, NameType

Action = Literal[
    "start", "continue", "increase", "decrease", "hold", "resume", "discontinue", "ineligible",
    "refer",
]  # fmt: skip
ACTIONS: tuple[str, ...] = Action.__args__  # type: ignore[attr-defined]
Frequency = Literal["qd", "bid", "qod", "weekly"]
Rounding = Literal["nearest", "down"]


def _positive(
    instance: object, attribute: attrs.Attribute[Fraction | None], value: Fraction | None
) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value}")


@attrs.frozen
class Source:
    """A document rules cite: a seed file, a label, a paper."""

    id: str
    kind: str
    ref: str
    cite: str


@attrs.frozen
class LabInput:
    """A lab the protocol reads, with how old a result may be and its reference limits."""

    name: str
    label: str
    unit: str
    low: Fraction
    high: Fraction
    max_age_days: int
    molar_mass: str | None = None
    uln_default: Fraction | None = attrs.field(default=None, validator=_positive)
    """The protocol's upper limit of normal, in `unit`, when the patient's own is not given."""
    after_dose_change: bool = False
    """Only a result drawn after the current dose started is used (a trough)."""
    steady_after_days: int = 0
    """With after_dose_change: only a result drawn at least this many days after the current
    dose started is used (steady state)."""


@attrs.frozen
class Reading:
    """How a typed quantity is read for this protocol: unit, plausible range, known spellings."""

    name: str
    unit: str
    low: Fraction
    high: Fraction
    molar_mass: str | None = None
    bare_unit: str | None = None
    """Unit of a bare number (age in years); None means a unit is required."""
    spellings: Mapping[str, Conversion] = attrs.Factory(dict)
    """Every known spelling that converts to `unit`, resolved when the protocol is compiled."""
    smallest: Fraction = Fraction(0)
    """The smallest plausible value above 0, in `unit` (0: any value in the range)."""

    def plausible(self, value: Fraction) -> bool:
        """Within the range, and not a sliver above 0 that no lab reports."""
        return self.low <= value <= self.high and not 0 < value < self.smallest


@attrs.frozen
class Ladder:
    """Dose levels a protocol steps up and down, lowest first (mg per administration)."""

    name: str
    drug: str
    frequency: Frequency
    levels: tuple[Fraction, ...]
    source: str


@attrs.frozen
class DoseSpec:
    """A dose: a fixed amount, a remembered ladder level, or an amount per m² of BSA rounded
    to what the strengths allow."""

    drug: str
    frequency: Frequency
    amount: Fraction | None = attrs.field(default=None, validator=_positive)
    """mg per administration."""
    level_from: str | None = None
    """A dose memory slot whose current ladder level is the amount."""
    per_m2: Fraction | None = attrs.field(default=None, validator=_positive)
    """mg per m² per administration."""
    round_to: Fraction | None = attrs.field(default=None, validator=_positive)
    """mg step the per-m² amount is rounded to (the smallest tablet, or a site parameter)."""
    rounding: Rounding = "nearest"
    unit: str = "mg"
    ceiling: Fraction | None = attrs.field(default=None, validator=_positive)
    """mg per administration above which a per-m² dose is not given (refer)."""
    ceiling_name: str = ""
    """The site parameter the ceiling comes from, for the reasons."""
    tolerance: Fraction | None = None
    """For a per-m² dose: the largest share the rounded dose may differ from the calculated
    one; beyond it the decision is refer (None: any rounding)."""


@attrs.frozen
class Monitoring:
    """How soon to check again; the first entry whose `when` holds (or has none) applies."""

    every_days: Fraction
    when: Guard | None
    source: str
    note: str = ""
    """Said in the decision when this cadence applies (what else is due besides labs)."""


@attrs.frozen
class Effect:
    """A memory update on a transition, computed from the memory before the transition:
    set a value, add to a count, remember the state left, move a dose one ladder level up
    or down, or copy another slot (the last dose that held remission)."""

    name: str
    kind: Literal["set", "add", "state", "up", "down", "copy", "scale"]
    value: Fraction | str | None
    """What to set or add, the slot to copy, or the lab a 'scale' divides by."""
    levels: tuple[Fraction, ...] = ()
    """The ladder an 'up' or 'down' moves on."""
    target: Fraction | None = None
    """For 'scale': dose x target / measured (target in the measured lab's unit)."""


@attrs.frozen
class Wait:
    """A rule's declaration that missing data means "not yet" rather than "cannot decide":
    while any of `data` is missing (or too old to use), the rule does not apply at this
    visit. Never on a rule that holds, stops, excludes or cuts the dose for toxicity."""

    data: tuple[str, ...]
    """The observations the rule waits for (labs, facts or assessments)."""
    because: str
    """Why missing data means "not yet" here, in the clinic's words."""
    source: str
    """The source that supports it."""
    recheck_days: Fraction | None = None
    """Check again within this many days while the rule waits (None: the state's cadence)."""
    at_most_days: Fraction | None = None
    """Wait at most this many days since the datum was last observed (usable or not; when
    never, since the current dose, else the therapy, started): past it the rule no longer
    waits, and the visit is referred (None: no limit)."""


@attrs.frozen
class CarriedForward:
    """An assessment that rarely changes, used at later visits like a lab: for at most
    `max_age_days` after it was recorded."""

    name: str
    max_age_days: Fraction
    source: str


@attrs.frozen
class Transition:
    """A guarded move out of a state, with the rule id and the source it cites."""

    rule: str
    origin: str
    target: str
    when: Guard
    when_text: str
    priority: int
    action: Action
    source: str
    message: str
    effects: tuple[Effect, ...] = ()
    path: str = ""
    line: int = 0
    waits: Wait | None = None
    """Missing data that means "not yet" for this rule (None: missing data blocks it)."""


@attrs.frozen
class State:
    """A dose level, hold, taper step or stop."""

    name: str
    doses: tuple[DoseSpec, ...]
    transitions: tuple[Transition, ...]
    monitoring: tuple[Monitoring, ...]
    stay: Action | None
    """What staying here means when no rule fires; None means a decision is required here."""
    source: str
    initial: bool = False
    final: bool = False
    note: str = ""


@attrs.frozen
class MemorySlot:
    """Something the protocol remembers across visits (holds so far, the state held from)."""

    name: str
    kind: Literal["count", "state", "dose"]
    initial: Fraction | str
    """A count, a state name ('none' when there is none yet), or a ladder level in mg."""
    note: str
    ladder: str | None = None
    step: Fraction | None = None
    """For a dose not on a ladder: what the strengths allow it to be a multiple of (mg)."""
    max_change: Fraction | None = None
    """For a dose not on a ladder: the largest change per adjustment, as a share of the dose."""
    once: Guard | None = None
    """For a count: set to 1 at the first visit where this holds, whatever rule decides it
    (and kept), so that 'never' in a source covers every visit, holds and refusals included."""
    once_text: str = ""
    track: Guard | None = None
    """For a count: after each visit the protocol decided (not a referral), 1 if this held at
    the visit, 0 if not (unknown: kept), so the rules of the next visit know what the last
    decided one showed ('a fall' into a band)."""


@attrs.frozen
class Parameter:
    """A site parameter: where the sources are silent, a named default with a note."""

    name: str
    value: str
    note: str


@attrs.frozen
class ScenarioVisit:
    """One visit of a scenario: what is observed, and what the protocol must decide."""

    day: int
    observations: Mapping[str, tuple[str, int]]
    """name -> (value as typed, days before the visit it was drawn)."""
    expect_state: str | None = None
    expect_action: str | None = None
    expect_doses: tuple[str, ...] | None = None
    """Each as 'AMOUNT UNIT FREQUENCY' ('300 mg qd'); empty when no dose is given."""
    expect_reasons: tuple[str, ...] = ()
    """Text each of which must appear in some reason."""
    expect_warnings: tuple[str, ...] = ()
    expect_next_check_days: int | None = None
    expect_rule: str | None = None
    """The id of the rule that must decide the visit."""


@attrs.frozen
class Scenario:
    """A protocol's own test: a patient, a starting point and visits with expected decisions."""

    name: str
    visits: tuple[ScenarioVisit, ...]
    start_state: str | None = None
    start_memory: Mapping[str, Fraction | str] = attrs.Factory(dict)
    start_days_on_therapy: int | None = None
    start_days_at_dose: int | None = None
    start_days_in_state: int | None = None
    line: int = 0
    quote: str = ""
    """The source sentence the scenario was written from (not from the rule)."""


@attrs.frozen
class Property:
    """Something that must hold on every timeline (checked with generated timelines)."""

    name: str
    lower_never_raises: tuple[str, ...] = ()
    """Labs for which a lower value, all else equal and from the same state, never gives a
    higher daily dose."""
    within_max_daily_dose: bool = False
    """Along any timeline, no recommended daily dose exceeds limits.max_daily_dose."""
    rules_within_max_daily_dose: bool = False
    """Stricter: no rule ever asks for more than limits.max_daily_dose, so the engine never
    has to refer because of the maximum."""


InvariantKind = Literal["ceiling", "floor", "never", "stays_at_most_after", "recheck_within"]
INVARIANT_KINDS: tuple[str, ...] = InvariantKind.__args__  # type: ignore[attr-defined]


@attrs.frozen
class Invariant:
    """What a source forbids, encoded apart from the rules: a sentence with 'never', 'at
    most', 'only if', 'maximum' or 'until', checked on generated courses by `dosing check`.

    It applies at a visit when its conditions hold: `while` at that visit (an unknown value
    counts as holding: data that is missing never excuses a dose), `once` at that or any
    earlier visit, and `after` some earlier decision (an action or a rule id), `times` times,
    the last one less than `within_days` ago."""

    name: str
    kind: InvariantKind
    source: str
    quote: str
    """The source sentence, as written there."""
    amount: Fraction | None = None
    """ceiling/floor: mg per day of `drug`; recheck_within: days."""
    drug: str = ""
    actions: frozenset[str] = frozenset()
    """never: the actions it forbids ('dose': any dose of `drug`); ceiling/floor: the actions
    it applies to (empty: every decision that gives a dose)."""
    while_: Guard | None = None
    while_text: str = ""
    once: Guard | None = None
    once_text: str = ""
    after: frozenset[str] = frozenset()
    times: int = 1
    within_days: Fraction | None = None
    exempt: frozenset[str] = frozenset()
    """never/ceiling/floor: rules the sentence does not cover ('except'); stays_at_most_after:
    the rules that may raise the level ('until')."""
    ended_by: frozenset[str] = frozenset()
    """never/ceiling/floor with `after` or `once`: the actions or rules that end what they
    started ('until': 'once counts were at the stop level, until the next resume')."""
    below: bool = False
    """stays_at_most_after: strictly below the dose given before a hold."""
    line: int = 0


@attrs.frozen
class Protocol:
    """A loaded, checked protocol."""

    id: str
    title: str
    drug: str
    version: str
    sha256: str
    sources: Mapping[str, Source]
    parameters: Mapping[str, Parameter]
    labs: Mapping[str, LabInput]
    facts: tuple[str, ...]
    assessments: tuple[str, ...]
    if_not_recorded: Mapping[str, str]
    """Assessments taken as a stated value when not recorded at a visit (with a note)."""
    memory: Mapping[str, MemorySlot]
    ladders: Mapping[str, Ladder]
    states: Mapping[str, State]
    initial: str
    scope: Mapping[str, NameType]
    constants: Mapping[str, Fraction]
    """Site parameters with a unit, by name, in the unit they are written in."""
    max_daily_dose: Fraction | None
    strengths: Mapping[str, tuple[Fraction, ...]] = attrs.Factory(dict)
    """Per drug, the strengths available; every dose must be made of them."""
    readings: Mapping[str, Reading] = attrs.Factory(dict)
    reads: Mapping[str, frozenset[str]] = attrs.Factory(dict)
    """Per state, the observations its rules read (through CrCl and BSA too)."""
    properties: tuple[Property, ...] = ()
    invariants: tuple[Invariant, ...] = ()
    scenarios: tuple[Scenario, ...] = ()
    carried_forward: Mapping[str, CarriedForward] = attrs.Factory(dict)
    """Assessments used at later visits within their maximum age, by name."""
