"""The decision record. Its JSON form is a contract that replay and the prompt rely on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

import attrs

from dosing.core.units import format_number
from dosing.protocol.checks import DOSES_PER_DAY
from dosing.protocol.model import Action


@attrs.frozen
class DoseLine:
    """One drug's recommended dose."""

    drug: str
    amount: Fraction
    unit: str
    frequency: str

    def __str__(self) -> str:
        return f"{self.drug} {format_number(self.amount)} {self.unit} {self.frequency}"

    def short(self) -> str:
        """'300 mg qd', the form scenarios are written in."""
        return f"{format_number(self.amount)} {self.unit} {self.frequency}"


def daily_amount(doses: Iterable[DoseLine], drug: str) -> Fraction:
    """The total amount of `drug` per day in these dose lines (0 when there is none)."""
    return sum(
        (d.amount * DOSES_PER_DAY[d.frequency] for d in doses if d.drug == drug), Fraction(0)
    )


@attrs.frozen
class RuleRef:
    """A rule that decided, with the source it cites."""

    id: str
    source: str


@attrs.frozen
class Decision:
    """One visit's recommendation and why. `dosing` recommends; a person decides."""

    patient_id: str | None
    date: dt.date
    protocol: str
    protocol_version: str
    protocol_sha256: str
    state: str
    action: Action
    doses: tuple[DoseLine, ...]
    next_check: dt.date | None
    rules: tuple[RuleRef, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    dose_given: str | None = None
    """The dose actually given, when a replayed timeline records it."""
    matches_given: bool | None = None
    """Whether the dose given is the dose recommended (None when nothing was recorded)."""
    awaiting: tuple[str, ...] = ()
    """What rules that wait for data ("not yet") still need: the dose continued meanwhile.
    Empty for every other decision."""

    def to_json(self) -> dict[str, Any]:
        """The contract form: plain JSON types, amounts as numbers, dates as ISO text. The
        dose_given fields appear only when a dose given was recorded, `awaiting` only when
        rules wait for data."""
        record: dict[str, Any] = {
            "patient_id": self.patient_id,
            "date": self.date.isoformat(),
            "protocol": self.protocol,
            "protocol_version": self.protocol_version,
            "protocol_sha256": self.protocol_sha256,
            "state": self.state,
            "action": self.action,
            "doses": [
                {
                    "drug": dose.drug,
                    "amount": _json_number(dose.amount),
                    "unit": dose.unit,
                    "frequency": dose.frequency,
                }
                for dose in self.doses
            ],
            "next_check": self.next_check.isoformat() if self.next_check else None,
            "rules": [{"id": rule.id, "source": rule.source} for rule in self.rules],
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
        }
        if self.dose_given is not None:
            record["dose_given"] = self.dose_given
            record["matches_given"] = self.matches_given
        if self.awaiting:
            record["awaiting"] = list(self.awaiting)
        return record


def _json_number(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else float(format_number(value))


def decision_from_json(record: dict[str, Any]) -> Decision:
    """A decision record read back from its JSON form (the store, a JSONL file)."""
    return Decision(
        patient_id=record["patient_id"],
        date=dt.date.fromisoformat(record["date"]),
        protocol=record["protocol"],
        protocol_version=record["protocol_version"],
        protocol_sha256=record["protocol_sha256"],
        state=record["state"],
        action=record["action"],
        doses=tuple(
            DoseLine(d["drug"], Fraction(str(d["amount"])), d["unit"], d["frequency"])
            for d in record["doses"]
        ),
        next_check=dt.date.fromisoformat(record["next_check"]) if record["next_check"] else None,
        rules=tuple(RuleRef(r["id"], r["source"]) for r in record["rules"]),
        reasons=tuple(record["reasons"]),
        warnings=tuple(record["warnings"]),
        dose_given=record.get("dose_given"),
        matches_given=record.get("matches_given"),
        awaiting=tuple(record.get("awaiting", ())),
    )
