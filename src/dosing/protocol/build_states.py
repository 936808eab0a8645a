"""Building a protocol's states: each state's dose and monitoring, its transitions with
their guards and citations, what a rule may wait for, and the effect of a move on the dose.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction

from dosing.core.vocabulary import VOCABULARY, Quantitative
from dosing.protocol import guards
from dosing.protocol.build_context import DERIVED_FROM
from dosing.protocol.build_doses import DoseBuilder
from dosing.protocol.entries import (
    StateEntry,
    TransitionEntry,
)
from dosing.protocol.model import (
    Effect,
    Monitoring,
    Source,
    State,
    Transition,
    Wait,
)

_NEVER_WAITS = frozenset({"hold", "discontinue", "ineligible"})
"""Actions a rule may not wait for data on (the engine's STOPS): a hold, stop or exclusion is
never skipped because data is missing."""

_TOXICITY_ASSESSMENTS = frozenset({"toxicity", "bleeding"})


def _toxicity_read(when: guards.Guard) -> set[str]:
    """The labs (upper limits and CrCl's creatinine included) and toxicity assessments a
    guard reads: what makes a decrease one driven by toxicity."""
    names = set(guards.names_in(when))
    for derived, parts in DERIVED_FROM.items():
        if derived in names:
            names |= parts
    return {
        name
        for name in names
        if name in _TOXICITY_ASSESSMENTS
        or (name in VOCABULARY and VOCABULARY[name].role in ("lab", "uln"))
    }


class StateBuilder(DoseBuilder):
    """The `states:` section: states, transitions, waits and effects on the dose."""

    def state(
        self, name: str, entry: StateEntry, scope: guards.Scope, sources: Mapping[str, Source]
    ) -> State:
        path = f"states.{name}"
        transitions = tuple(
            self.transition(name, index, t, scope, sources)
            for index, t in enumerate(entry.transitions)
        )
        for index, transition in enumerate(transitions):
            if transition.waits is not None and entry.stay is None:
                raise self.fail(
                    f"{path}.transitions[{index}].waits_for",
                    f"rule '{transition.rule}' can wait for data only in a state that says "
                    "what staying means (stay: continue, hold ...): there is nothing to go on "
                    "with meanwhile",
                )
        monitoring = tuple(
            Monitoring(
                every_days=self.quantity(m.every, "days", f"{path}.monitoring[{i}].every"),
                when=None
                if m.when is None
                else self.guard(m.when, scope, f"{path}.monitoring[{i}].when"),
                source=self.cite(m.source, sources, f"{path}.monitoring[{i}].source"),
                note=m.note,
            )
            for i, m in enumerate(entry.monitoring)
        )
        doses = tuple(self.dose(d, f"{path}.doses[{i}]") for i, d in enumerate(entry.doses))
        return State(
            name=name,
            doses=doses,
            transitions=transitions,
            monitoring=monitoring,
            stay=entry.stay,
            source=self.cite(entry.source, sources, f"{path}.source"),
            initial=entry.initial,
            final=entry.final,
            note=entry.note,
        )

    def transition(
        self,
        origin: str,
        index: int,
        entry: TransitionEntry,
        scope: guards.Scope,
        sources: Mapping[str, Source],
    ) -> Transition:
        path = f"states.{origin}.transitions[{index}]"
        when = self.guard(entry.when, scope, f"{path}.when")
        effects = tuple(
            self.effect(k, v, f"{path}.remember.{k}") for k, v in entry.remember.items()
        )
        waits = None
        if entry.waits_for is not None:
            waits = self.wait(entry, when, effects, sources, f"{path}.waits_for")
        return Transition(
            rule=entry.rule,
            origin=origin,
            target=entry.to,
            when=when,
            when_text=" ".join(entry.when.split()),
            priority=entry.priority,
            action=entry.action,
            source=self.cite(entry.source, sources, f"{path}.source"),
            message=entry.message,
            effects=effects,
            path=path,
            line=self.where.line(path),
            waits=waits,
        )

    def wait(
        self,
        entry: TransitionEntry,
        when: guards.Guard,
        effects: tuple[Effect, ...],
        sources: Mapping[str, Source],
        path: str,
    ) -> Wait:
        """A rule's "not yet": refused where missing data must never excuse a dose."""
        declared = entry.waits_for
        assert declared is not None
        if entry.action in _NEVER_WAITS:
            raise self.fail(
                path,
                f"rule '{entry.rule}' is a {entry.action} rule: a hold, stop or exclusion is "
                "never skipped because its data is missing, so it cannot wait for data",
            )
        if entry.action == "decrease":
            scaled = {e.value for e in effects if e.kind == "scale" and isinstance(e.value, str)}
            toxic = sorted(_toxicity_read(when) - scaled)
            if toxic:
                raise self.fail(
                    path,
                    f"rule '{entry.rule}' is a decrease that reads {', '.join(toxic)}: a "
                    "decrease driven by toxicity cannot wait for data; only a taper (no lab "
                    "or toxicity read) or a proportional adjustment to a target level "
                    "('scale by') may",
                )
        if not declared.data:
            raise self.fail(f"{path}.data", "name the observations the rule waits for")
        for number, name in enumerate(declared.data):
            if name not in self.inputs:
                raise self.fail(
                    f"{path}.data[{number}]",
                    f"'{name}' is not a lab, fact or assessment of this protocol "
                    f"({', '.join(sorted(self.inputs))})",
                )
        if not declared.because.strip():
            raise self.fail(f"{path}.because", "say why missing data means 'not yet' here")
        recheck = None
        if declared.recheck is not None:
            recheck = self.quantity(declared.recheck, "days", f"{path}.recheck")
            if recheck <= 0:
                raise self.fail(f"{path}.recheck", "a recheck is a positive duration")
        at_most = None
        if declared.at_most is not None:
            at_most = self.quantity(declared.at_most, "days", f"{path}.at_most")
            if at_most <= 0:
                raise self.fail(f"{path}.at_most", "'at_most' is a positive duration")
        return Wait(
            data=tuple(declared.data),
            because=" ".join(declared.because.split()),
            source=self.cite(declared.source, sources, f"{path}.source"),
            recheck_days=recheck,
            at_most_days=at_most,
        )

    def effect(self, name: str, text: str, path: str) -> Effect:
        slot = self.entry.memory.get(name)
        if slot is None:
            raise self.fail(path, f"'{name}' is not declared under memory")
        text = text.strip()
        added = re.fullmatch(rf"{re.escape(name)}\s*([+-])\s*([0-9]{{1,9}})", text)
        if slot.kind == "count" and added:
            step = Fraction(added[2])
            return Effect(name, "add", step if added[1] == "+" else -step)
        if slot.kind == "count" and re.fullmatch(r"[0-9]{1,9}", text):
            return Effect(name, "set", Fraction(text))
        if slot.kind == "state" and text == "state":
            return Effect(name, "state", None)
        if slot.kind == "state" and (text in self.entry.states or text == "none"):
            return Effect(name, "set", text)
        scaled = re.fullmatch(r"scale by (\w+) / (\w+)", text)
        if slot.kind == "dose" and slot.ladder is None and scaled:
            return self.scale_effect(name, scaled[1], scaled[2], path)
        if slot.kind == "dose" and slot.ladder is not None:
            ladder = self.ladders[slot.ladder]
            if text in ("up", "down"):
                return Effect(name, "up" if text == "up" else "down", None, ladder.levels)
            other = self.entry.memory.get(text)
            if other is not None and other.kind == "dose" and other.ladder == slot.ladder:
                return Effect(name, "copy", text)
            if re.match(r"^[0-9]", text):
                return Effect(name, "set", self.level(text, ladder, path))
        expected = {
            "count": f"{name} + N, or a number",
            "state": "state, none or a state name",
            "dose": "up, down, a level in mg, another dose memory on the same ladder, "
            "or (for a dose with a step) 'scale by TARGET / LAB'",
        }[slot.kind]
        raise self.fail(path, f"'{text}' is not an update dosing understands; expected {expected}")

    def scale_effect(self, name: str, target: str, measured: str, path: str) -> Effect:
        lab = self.entry.inputs.labs.get(measured)
        if lab is None:
            raise self.fail(path, f"'{measured}' is not one of this protocol's labs")
        measure = VOCABULARY[measured].measure
        assert isinstance(measure, Quantitative)
        unit = lab.unit or measure.canonical
        amount = self._lab_quantity(target, unit, measured, measure.molar_mass, path)
        return Effect(name, "scale", measured, target=amount)
