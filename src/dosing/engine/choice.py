"""The clinician's choice after a decision: the dose given, whether it is the advice, what the
protocol's strengths and maximum say of it, and where the course goes from it.

Pure. The prompt, replay and corrections share it, so that a course recorded at the prompt,
its exported timeline replayed, and a corrected course all move the same way: a dose given
that is not the advice moves the patient to the state (or ladder level) that gives it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from fractions import Fraction

import attrs

from dosing.core.units import format_number
from dosing.engine.decision import Decision, DoseLine
from dosing.engine.patient import PatientRecord
from dosing.protocol.checks import DOSES_PER_DAY, makeable
from dosing.protocol.model import Protocol

DOSE = re.compile(
    r"^\s*(?:(?P<drug>[A-Za-z][\w-]*)\s+)?(?P<amount>\d{1,6}(?:\.\d{1,4})?)\s*mg\s+"
    r"(?P<frequency>qd|bid|qod|weekly)\s*$"
)
"""A dose as a clinician writes it: '300 mg qd', 'imatinib 400 mg qd'."""
NO_DOSE = ("none", "held", "hold")
"""What a clinician writes for no dose."""


def is_dose(text: str) -> bool:
    """Whether the text is a dose ('300 mg qd') or no dose ('none')."""
    return text.strip().lower() in NO_DOSE or DOSE.match(text) is not None


def _normalized(text: str) -> str:
    return " ".join(text.lower().replace(",", " + ").split())


def advised(decision: Decision) -> str:
    """The advice as a dose given is written: '300 mg qd', 'none' when there is no dose."""
    return " + ".join(dose.short() for dose in decision.doses) or "none"


def matches(given: str, decision: Decision) -> bool | None:
    """Whether a dose given ('300 mg qd'; 'none' or 'held' for no dose) is the one advised;
    None after a refer, where there is no advice to compare with."""
    if decision.action == "refer":
        return None
    if not decision.doses:
        return _normalized(given) in ("none", "held", "hold", "0", "0 mg", "no dose")
    with_drugs = " + ".join(str(dose) for dose in decision.doses)
    return _normalized(given) in (_normalized(advised(decision)), _normalized(with_drugs))


def concerns(protocol: Protocol, dose: str) -> list[str]:
    """Why a dose chosen needs the clinician's explicit confirmation: no combination of the
    strengths available makes it, or it is above the protocol's maximum. Empty when neither."""
    match = DOSE.match(dose)
    if match is None:
        return []
    drug = match["drug"] or protocol.drug
    amount, frequency = Fraction(match["amount"]), match["frequency"]
    found = []
    strengths = protocol.strengths.get(drug)
    if amount > 0 and strengths and not makeable(amount, strengths):
        listed = ", ".join(f"{format_number(s)} mg" for s in strengths)
        found.append(
            f"no combination of the {drug} strengths available ({listed}) makes "
            f"{format_number(amount)} mg"
        )
    daily = amount * DOSES_PER_DAY[frequency]
    limit = protocol.max_daily_dose
    if limit is not None and drug == protocol.drug and daily > limit:
        found.append(
            f"{format_number(amount)} mg {frequency} is {format_number(daily)} mg/day, above "
            f"the maximum of {format_number(limit)} mg/day of {protocol.id}"
        )
    return found


def follow(
    protocol: Protocol, decision: Decision, record: PatientRecord, given: str | None
) -> tuple[PatientRecord, str]:
    """The record after the dose given: unchanged when it is the advice (or not recorded),
    else moved to what was given (`apply_choice`)."""
    if given is None or matches(given, decision) is True:
        return record, ""
    return apply_choice(protocol, record, given, decision.date)


def apply_choice(
    protocol: Protocol, record: PatientRecord, dose: str, date: dt.date
) -> tuple[PatientRecord, str]:
    """The record after a dose chosen instead of the advice: moved to the state (or ladder
    level) that gives it, when one does; the note says what was done."""
    match = DOSE.match(dose)
    if match is None:
        return record, (
            f"The dose chosen ({dose}) is no protocol dose; the next decision continues "
            f"from state {record.state}."
        )
    amount, frequency = Fraction(match["amount"]), match["frequency"]
    state = protocol.states[record.state or protocol.initial]
    for spec in state.doses:
        slot = protocol.memory.get(spec.level_from or "")
        if slot is not None and spec.frequency == frequency:
            levels = protocol.ladders[slot.ladder].levels if slot.ladder else ()
            on_step = slot.step is not None and (amount / slot.step).denominator == 1
            if amount in levels or on_step:
                memory = {**record.memory, slot.name: amount}
                note = f"The next decision starts from the chosen {dose} ({slot.name})."
                return attrs.evolve(record, memory=memory, dose_since=date), note
    for candidate in protocol.states.values():
        fixed = [d for d in candidate.doses if d.amount is not None]
        if (
            not candidate.final
            and len(fixed) == 1
            and fixed[0].amount == amount
            and fixed[0].frequency == frequency
        ):
            moved = attrs.evolve(record, state=candidate.name, state_since=date, dose_since=date)
            return moved, f"The next decision starts from state {candidate.name} ({dose})."
    return record, (
        f"No state of {protocol.id} gives {dose}; the next decision continues from "
        f"state {record.state}."
    )


def override_note(
    date: dt.date,
    doses: Sequence[DoseLine],
    given: str,
    reason: str | None,
    record: PatientRecord,
) -> str:
    """The warning on the decision after a visit whose advice was not followed."""
    shown = ", ".join(dose.short() for dose in doses)
    return (
        f"At the last visit ({date}) the recommendation ({shown or 'no dose'}) was "
        f"overridden: {given} chosen ({reason or 'no reason recorded'}). This decision starts "
        f"from state {record.state}."
    )
