"""The dose a move gives: scaled by its effect, remembered across states, capped by the
protocol's limits, with the next check's date.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from fractions import Fraction

import attrs

from dosing.core.errors import EngineError
from dosing.core.units import format_number
from dosing.engine.choosing import NO_DOSE
from dosing.engine.decision import Decision, DoseLine, RuleRef, daily_amount
from dosing.engine.patient import PatientRecord
from dosing.engine.recording import DecisionRecorder
from dosing.protocol.model import Action, DoseSpec, Effect, State, Transition

OVER_MAXIMUM = "would exceed the protocol maximum"
"""In the warning of a decision whose rule asked for more than limits.max_daily_dose."""


@attrs.define
class DoseMaker(DecisionRecorder):
    """Concludes a move with its dose: the effect on the level, the memory, the limits."""

    def remember(
        self, state: State, transition: Transition, reasons: list[str]
    ) -> dict[str, Fraction | str] | None:
        """Memory after the transition's effects, each computed from the memory before it;
        None (with a warning) when a dose cannot move as the rule says."""
        before = self.memory
        after = dict(before)
        for effect in transition.effects:
            current = before[effect.name]
            if effect.kind == "scale":
                assert isinstance(current, Fraction)
                scaled = self.scale(effect, current, reasons)
                if scaled is None:
                    return None
                after[effect.name] = scaled
            elif effect.kind == "state":
                after[effect.name] = state.name
            elif effect.kind == "copy":
                assert isinstance(effect.value, str)
                after[effect.name] = before[effect.value]
            elif effect.kind in ("up", "down"):
                step = 1 if effect.kind == "up" else -1
                index = effect.levels.index(current) + step if current in effect.levels else -1
                if not 0 <= index < len(effect.levels):
                    levels = ", ".join(format_number(v) for v in effect.levels)
                    self.warnings.append(
                        f"{effect.name} cannot go {effect.kind} from {current} mg on its ladder "
                        f"({levels} mg); the clinician decides"
                    )
                    return None
                after[effect.name] = effect.levels[index]
            elif effect.kind == "add":
                assert isinstance(current, Fraction)
                assert isinstance(effect.value, Fraction)
                after[effect.name] = current + effect.value
            elif effect.value is not None:
                after[effect.name] = effect.value
        return after

    def scale(self, effect: Effect, current: Fraction, reasons: list[str]) -> Fraction | None:
        """dose x target / measured, capped per step, rounded to the dose's step."""
        slot = self.protocol.memory[effect.name]
        assert slot.step is not None
        assert slot.max_change is not None
        assert effect.target is not None
        assert isinstance(effect.value, str)
        measured = self.facts.values.get(effect.value)
        if not isinstance(measured, Fraction) or measured <= 0:
            self.warnings.append(f"{effect.value} is needed to adjust {effect.name}")
            return None
        raw = current * effect.target / measured
        low, high = current * (1 - slot.max_change), current * (1 + slot.max_change)
        capped = min(max(raw, low), high)
        steps = capped / slot.step
        whole = math.floor(steps)
        toward_current = capped > current  # a tie rounds toward the current dose
        if steps - whole > Fraction(1, 2) or (
            steps - whole == Fraction(1, 2) and not toward_current
        ):
            whole += 1
        amount = whole * slot.step
        if amount > high:
            amount -= slot.step
        elif amount < low:
            amount += slot.step
        unit = self.protocol.labs[effect.value].unit
        cap = ""
        if capped != raw:
            share = format_number(slot.max_change * 100)
            cap = f"; capped at a {share}% change = {format_number(capped, 3)} mg"
        reasons.append(
            f"{effect.name.replace('_', ' ')} {format_number(current)} mg x target "
            f"{format_number(effect.target)} {unit} / measured {format_number(measured, 3)} {unit} "
            f"= {format_number(raw, 3)} mg{cap}; rounded to a multiple of "
            f"{format_number(slot.step)} mg: {format_number(amount)} mg"
        )
        if amount <= 0 or amount == current:
            self.warnings.append(
                f"no {format_number(slot.step)} mg step changes {effect.name.replace('_', ' ')} "
                f"from {format_number(current)} mg within the cap; the clinician decides"
            )
            return None
        return amount

    def dose(
        self, spec: DoseSpec, reasons: list[str], memory: Mapping[str, Fraction | str]
    ) -> DoseLine | None:
        if spec.amount is not None:
            return DoseLine(spec.drug, spec.amount, spec.unit, spec.frequency)
        if spec.level_from is not None:
            level = memory[spec.level_from]
            assert isinstance(level, Fraction)
            return DoseLine(spec.drug, level, spec.unit, spec.frequency)
        assert spec.per_m2 is not None
        bsa = self.facts.values.get("bsa")
        if not isinstance(bsa, Fraction):
            self.warnings.append(
                f"{spec.drug} is dosed per m²: {self.facts.absent.get('bsa', 'BSA unknown')}"
            )
            return None
        raw = spec.per_m2 * bsa
        amount, how = raw, ""
        if spec.round_to is not None:
            steps = raw / spec.round_to
            whole = math.floor(steps)
            if spec.rounding == "nearest" and steps - whole > Fraction(1, 2):
                whole += 1
            amount = whole * spec.round_to
            nearest = spec.rounding == "nearest"
            mode = "to the nearest" if nearest else "down to a multiple of"
            tie = " (a tie rounds down)" if nearest else ""
            step = format_number(spec.round_to)
            how = f"; rounded {mode} {step} mg{tie}: {format_number(amount)} mg"
        reasons.append(
            f"{spec.drug} {format_number(spec.per_m2)} mg/m² x BSA {format_number(bsa, 3)} m² "
            f"(Mosteller) = {format_number(raw, 1)} mg{how}"
        )
        if spec.tolerance is not None and abs(amount - raw) > spec.tolerance * raw:
            share = format_number(abs(amount - raw) / raw * 100, 0)
            allowed = format_number(spec.tolerance * 100)
            self.warnings.append(
                f"{spec.drug}: the rounded dose, {format_number(amount)} mg, is {share}% from the "
                f"calculated {format_number(raw, 1)} mg (at most {allowed}%); a finer "
                "formulation or the clinician decides"
            )
            return None
        if spec.ceiling is not None and amount > spec.ceiling:
            named = f" ({spec.ceiling_name})" if spec.ceiling_name else ""
            self.warnings.append(
                f"{spec.drug} {format_number(amount)} mg is above the ceiling of "
                f"{format_number(spec.ceiling)} mg per dose{named}; the clinician decides"
            )
            return None
        if amount <= 0:
            self.warnings.append(f"{spec.drug}: the rounded dose is 0 mg; the clinician decides")
            return None
        return DoseLine(spec.drug, amount, spec.unit, spec.frequency)

    def within_limit(self, doses: tuple[DoseLine, ...]) -> bool:
        limit = self.protocol.max_daily_dose
        daily = daily_amount(doses, self.protocol.drug)
        if limit is not None and daily > limit:
            self.warnings.append(
                f"{format_number(daily)} mg/day {OVER_MAXIMUM} of "
                f"{format_number(limit)} mg/day; the clinician decides"
            )
            return False
        return True

    def next_check(
        self, target: State, record: PatientRecord, reasons: list[str]
    ) -> dt.date | None:
        values = dict(self.facts.values)
        started = record.therapy_started_on
        values["days_on_therapy"] = Fraction((self.visit - started).days) if started else None
        values["days_in_state"] = Fraction((self.visit - (record.state_since or self.visit)).days)
        dosed = record.dose_since
        values["days_at_dose"] = Fraction((self.visit - dosed).days) if dosed else None
        values.update(record.memory)
        values.update(self.protocol.constants)
        evaluate = self.facts.evaluator.evaluate
        for monitoring in target.monitoring:
            # An unknown condition counts as met: the more frequent check wins.
            if monitoring.when is None or evaluate(monitoring.when, values).truth is not False:
                if monitoring.note:
                    reasons.append(monitoring.note)
                # A duration is exact (a month is a Julian year / 12 = 30.4375 days, as in
                # the guards); the check falls on the first whole day it has fully elapsed, so
                # a patient seen on that date meets a guard written with the same duration.
                days = math.ceil(monitoring.every_days)
                try:
                    return self.visit + dt.timedelta(days=days)
                except OverflowError:
                    raise EngineError(
                        f"the next check, {days} days after {self.visit}, would fall after "
                        f"{dt.date.max}, the last date dosing can count to; is {self.visit} a "
                        "placeholder date?"
                    ) from None
        return None

    def conclude(
        self,
        target: State,
        action: Action,
        rules: tuple[RuleRef, ...],
        reasons: list[str],
        record: PatientRecord,
    ) -> tuple[Decision, PatientRecord]:
        doses: tuple[DoseLine, ...] = ()
        if action not in NO_DOSE:
            lines = [self.dose(spec, reasons, record.memory) for spec in target.doses]
            doses = tuple(line for line in lines if line is not None)
            if len(doses) < len(lines) or not self.within_limit(doses):
                return self.refer(rules, reasons)  # no dose can be given as the rule says
        # Final states have no monitoring; a stop that is not final (off drug) keeps its own.
        next_check = None if action == "refer" else self.next_check(target, record, reasons)
        return self.decision(target.name, action, doses, next_check, rules, reasons), record
