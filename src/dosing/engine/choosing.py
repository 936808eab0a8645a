"""Choosing the rule that fires: each transition's guard evaluated in priority order, a stop
that is certainly due stated even when a rule above it cannot be decided, and the rules that
may wait for data.
"""

from __future__ import annotations

import attrs

from dosing.core.errors import EngineError
from dosing.engine.evaluator import REFERENCE, Evaluator
from dosing.protocol.guards import Outcome, Value
from dosing.protocol.model import State, Transition

STATED_ALL_THE_SAME = {
    "hold": "the hold is stated all the same",
    "discontinue": "the stop is stated all the same",
    "ineligible": "the exclusion is stated all the same",
    "refer": "the referral is stated all the same",
}


STOPS: frozenset[str] = frozenset({"hold", "discontinue", "ineligible"})
"""Actions that give no dose: one that is certainly due is stated even when a rule above it
cannot be decided, so a hold is never skipped (nor left unrecorded) for missing data."""


NO_DOSE: frozenset[str] = STOPS | {"refer"}


@attrs.frozen
class Facts:
    """What the engine knows at a visit: values by name, and why any are absent."""

    values: dict[str, Value | None]
    absent: dict[str, str]
    entered: dict[str, str]
    defaults_used: frozenset[str]
    derivations: dict[str, str]
    """How each derived value was computed, for the reasons."""
    carried: dict[str, str] = attrs.Factory(dict)
    """Assessments recorded at an earlier visit and used here, each with what to say."""
    unusable: dict[str, Value] = attrs.Factory(dict)
    """Labs present but not usable (too old, before the dose, before steady state): what
    they were. Never dosed on; a rule they would make fire does not wait ("not yet")."""
    waited: dict[str, int] = attrs.Factory(dict)
    """Days since each input was last observed, usable or not (when never: since the current
    dose, else the therapy, started): how long a rule has been waiting for it."""
    evaluator: Evaluator = REFERENCE
    """How guards are evaluated and findings put into words (the reference, or a compiled
    evaluator that gives the same answers faster)."""


MEANWHILE = {"continue": "the current dose continues", "hold": "the hold continues"}
"""What a waiting decision means, by the state's stay."""


@attrs.frozen
class Choice:
    chosen: Transition | None
    outcome: Outcome | None
    considered: list[Outcome]
    undecided: list[tuple[Transition, Outcome]]
    """Rules above the chosen no-dose rule that could not be decided (their data missing)."""
    waiting: list[tuple[Transition, Outcome]] = attrs.Factory(list)
    """With nothing chosen: the rules that wait for missing data, and nothing else blocks."""
    passed: list[tuple[Transition, Outcome]] = attrs.Factory(list)
    """Rules of a higher priority than the chosen one, each decided not to apply."""


def waits_for(transition: Transition, outcome: Outcome, facts: Facts) -> bool:
    """Undecided while something the rule declared it waits for is absent ("not yet"): the
    declaration says the rule has nothing to act on without it, whatever else it lacks (a
    trough's timing, when no trough was drawn)."""
    wait = transition.waits
    if wait is None or outcome.truth is not None:
        return False
    missing = [name for name in wait.data if facts.values.get(name) is None]
    if not missing:
        return False
    if wait.at_most_days is not None and any(
        facts.waited.get(name, 0) > wait.at_most_days for name in missing
    ):
        return False  # waited too long: the clinician decides
    # A last value present but not usable (too old, drawn before the dose or before steady
    # state) that would make the rule fire is not "nothing yet": a trough of 40 ng/mL drawn
    # too early is the clinician's, not a reason to continue.
    known = {**facts.values, **facts.unusable}
    return facts.evaluator.evaluate(transition.when, known).truth is not True


def awaited(transition: Transition, outcome: Outcome, facts: Facts) -> frozenset[str]:
    """What a waiting rule still needs: its missing declared data, and what its guard lacked."""
    assert transition.waits is not None
    declared = {name for name in transition.waits.data if facts.values.get(name) is None}
    return frozenset(declared | outcome.missing)


def choose(state: State, facts: Facts) -> Choice:
    """The transition that fires, highest priority first; or what blocks a decision.

    A rule that cannot be decided blocks the rules below it, except that a rule giving no
    dose (hold, stop, exclusion) which certainly applies is taken when every undecided rule
    above it would also give no dose (or refer): the patient is held either way, and the
    hold is recorded. A rule that waits for missing data ("not yet") does not apply at this
    visit: a hold, stop or exclusion below it is taken, and so is a referral when nothing
    else is undecided; a dose below it is not given (the data decides between them); when
    nothing else applies, the state's stay does, until the data is there."""
    considered: list[Outcome] = []
    passed: list[tuple[Transition, Outcome]] = []
    blocked: list[tuple[Transition, Outcome]] = []
    waiting: list[tuple[Transition, Outcome]] = []
    for priority in sorted({t.priority for t in state.transitions}, reverse=True):
        group = [
            (t, facts.evaluator.evaluate(t.when, facts.values))
            for t in state.transitions
            if t.priority == priority
        ]
        fired = [(t, o) for t, o in group if o.truth is True]
        if len(fired) > 1:
            rules = " and ".join(f"'{t.rule}'" for t, _ in fired)
            raise EngineError(f"rules {rules} both apply at equal priority {priority}")
        if fired:
            rule, outcome = fired[0]
            if not blocked and not waiting:
                return Choice(rule, outcome, considered, [], passed=passed)
            if rule.action in STOPS or (rule.action == "refer" and not blocked):
                return Choice(rule, outcome, considered, [*blocked, *waiting], passed=passed)
            break  # a dose below an undecided or waiting rule: not given
        unknown = [(t, o) for t, o in group if o.truth is None]
        undecided = [(t, o) for t, o in unknown if not waits_for(t, o, facts)]
        blocked += undecided
        waiting += [(t, o) for t, o in unknown if waits_for(t, o, facts)]
        if any(t.action not in NO_DOSE for t, _ in undecided):
            break  # an undecided rule that could give a dose: nothing below may be taken
        if not unknown:
            considered.extend(o for _, o in group)
            passed.extend(group)
    else:
        if waiting and not blocked:
            return Choice(None, None, considered, [], waiting)
    first = blocked or waiting
    if first:
        return Choice(first[0][0], first[0][1], considered, [])
    return Choice(None, None, considered, [])
