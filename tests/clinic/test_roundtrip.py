"""The round trip: a course entered at the prompt and exported replays to the stored decisions.

Hypothesis plays the clinician: a new patient, then visits where each lab is typed, reused
with Enter or left out, answers accepted or overridden (doses no tablets make confirmed), a
second visit on one date amending the first, and earlier visits amended or voided. Everything
goes through the real conversation and the store; then `dosing history --format timeline` is
replayed, and every stored decision and course record must come back exactly.

In CI the examples are derandomized (ROUNDTRIP_SESSIONS sessions in all); more, at random:
    DOSING_ROUNDTRIP_SESSIONS=3000 .venv/bin/pytest tests/clinic/test_roundtrip.py
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import itertools
import json
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from rich.console import Console

from dosing.clinic.correcting import run_void
from dosing.clinic.history import show_history
from dosing.clinic.store import Store
from dosing.clinic.store_records import record_to_json
from dosing.clinic.visit import run_amend, run_visit
from dosing.core.errors import Cancelled
from dosing.core.units import format_number
from dosing.core.vocabulary import VOCABULARY, Categorical
from dosing.protocol import catalog
from dosing.protocol.guards import Comparison, comparisons_in
from dosing.protocol.model import Protocol
from dosing.replay.replay import replay
from dosing.replay.timeline import read_timeline

PROTOCOLS = ("imatinib-hes", "tacrolimus-trough", "ruxolitinib-hes", "imatinib-escalation-nilg")
SESSIONS = int(os.environ.get("DOSING_ROUNDTRIP_SESSIONS", "240"))
"""Sessions in all, shared between the protocols (the issue asks for at least 200 in CI)."""
RANDOM = "DOSING_ROUNDTRIP_SESSIONS" in os.environ
START = dt.date(2026, 1, 5)
_ids = itertools.count(1)
USUAL = {
    "anc": "3 x10^9/L", "platelets": "200 x10^9/L", "alt": "25 U/L", "ast": "25 U/L",
    "bilirubin": "0.6 mg/dL", "creatinine": "0.9 mg/dL", "tacrolimus_trough": "7 ng/mL",
    "eligibility_confirmed": "yes", "bleeding": "no", "response": "partial", "relapse": "no",
    "life_threatening": "no", "dialysis": "no", "sample_timing": "trough",
}  # fmt: skip
"""A stable patient's values, typed most often, so that courses start and go on."""


def _thresholds(protocol: Protocol) -> dict[str, set[Fraction]]:
    """Each lab's thresholds in its unit (ULN multiples at the protocol's default ULN)."""
    found: dict[str, set[Fraction]] = {name: set() for name in protocol.labs}
    for state in protocol.states.values():
        for transition in state.transitions:
            for atom in comparisons_in(transition.when):
                if not isinstance(atom, Comparison) or atom.subject not in protocol.labs:
                    continue
                reference = atom.reference
                if reference is None:
                    found[atom.subject].add(atom.factor)
                elif reference in protocol.constants:
                    constant = protocol.constants[reference]
                    if isinstance(constant, Fraction):
                        found[atom.subject].add(atom.factor * constant)
                else:
                    lab = protocol.labs[atom.subject]
                    if lab.uln_default is not None:
                        found[atom.subject].add(atom.factor * lab.uln_default)
    return found


def _typed_values(protocol: Protocol) -> dict[str, list[str]]:
    """What the clinician may type for each lab and assessment: values on, just around and
    far from each threshold, in the protocol's unit; each category."""
    values: dict[str, list[str]] = {}
    for name, thresholds in _thresholds(protocol).items():
        reading = protocol.readings[name]
        candidates = {
            threshold * Fraction(factor, 10)
            for threshold in thresholds or {reading.high / 10}
            for factor in (4, 9, 10, 11, 25)
        }
        values[name] = sorted(
            f"{format_number(value, 3)} {reading.unit}"
            for value in candidates
            if reading.plausible(Fraction(format_number(value, 3)))
        )
    for name in protocol.assessments:
        measure = VOCABULARY[name].measure
        assert isinstance(measure, Categorical)
        values[name] = list(measure.values)
    return values


def _questions(protocol: Protocol) -> list[tuple[str, str]]:
    """(how the prompt asks for it, name), longest first, as the conversation words them."""
    asked = []
    for name in (*protocol.facts, *protocol.labs, *protocol.assessments):
        entry = VOCABULARY[name]
        measure = entry.measure
        if isinstance(measure, Categorical):
            asked.append((f"{entry.label} ({'/'.join(measure.values)})", name))
        else:
            reading = protocol.readings.get(name)
            asked.append(
                (f"{entry.label} ({reading.unit if reading else measure.canonical})", name)
            )
    return sorted(asked, key=lambda pair: -len(pair[0]))


def _doses(protocol: Protocol) -> list[str]:
    """Doses a clinician may choose instead of the advice: the protocol's own, one no
    tablets make, one above the maximum, none."""
    doses = {"none", "350 mg qd", "0.3 mg bid", "2000 mg qd"}
    for state in protocol.states.values():
        for dose in state.doses:
            if dose.amount is not None:
                doses.add(f"{format_number(dose.amount)} mg {dose.frequency}")
    for ladder in protocol.ladders.values():
        doses |= {f"{format_number(level)} mg {ladder.frequency}" for level in ladder.levels}
    return sorted(doses)


class Clinician:
    """Answers the prompt with what hypothesis draws, question by question."""

    def __init__(self, protocol: Protocol, draw: Callable[[st.SearchStrategy[str]], str]) -> None:
        self.protocol = protocol
        self.draw = draw
        self.values = _typed_values(protocol)
        self.questions = _questions(protocol)
        self.doses = _doses(protocol)
        self.starting = True

    def __call__(self, question: str, default: str | None) -> str:
        pick = self.draw
        if question.startswith("Birth date"):
            adults = ["1980-07-15", "1950-02-28"] * 3
            return pick(st.sampled_from([*adults, "2008-03-01", "2016-11-30"]))
        if question.startswith("The clinician's answer"):
            choices = ["override"] if "(override)" in question else ["accept", "override"]
            return pick(st.sampled_from(choices))
        if question.startswith("Dose actually chosen"):
            return pick(st.sampled_from(self.doses))
        if question.startswith("Give "):
            return pick(st.sampled_from(["confirm", ""]))
        if question.startswith(("Reason for", "Amend that visit")):
            answers = ["yes", "no"] if question.startswith("Amend") else ["typo", "tolerated"]
            return pick(st.sampled_from(answers))
        for asked, name in self.questions:
            if question.startswith(asked):
                return self.value(name, question)
        raise AssertionError(f"unexpected question: {question}")

    def value(self, name: str, question: str) -> str:
        if name == "sex":
            return self.draw(st.sampled_from(["F", "M"]))
        if name in ("weight", "crcl_weight"):
            blank = [""] if "[Enter" in question else []
            return self.draw(st.sampled_from([*blank, "18 kg", "70 kg", "112.5 kg"]))
        if name == "height":
            return self.draw(st.sampled_from(["104 cm", "170 cm"]))
        if self.starting:  # mostly a patient who starts; sometimes one who does not
            kinds = ["usual"] * 12 + ["threshold"]
        else:
            kinds = ["usual"] * 6 + ["threshold"] * 3 + ["Enter"] * ("[Enter" in question) * 2
        kind = self.draw(st.sampled_from(kinds))
        if kind == "Enter":  # reuse, keep, or leave out
            return ""
        if kind == "usual" and name in USUAL:
            return USUAL[name]
        return self.draw(st.sampled_from(self.values[name]))


def _exported(store: Store, patient_id: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        show_history(store, catalog.load, patient_id, "timeline", None)
    return out.getvalue()


def _session(store: Store, protocol: Protocol, data: st.DataObject) -> str:
    """One patient's course through the prompt, with corrections; returns the patient id."""
    patient_id = f"R{next(_ids)}"
    console = Console(file=io.StringIO(), width=120)
    doctor = Clinician(protocol, lambda strategy: data.draw(strategy))
    date = START
    for _ in range(data.draw(st.integers(1, 6), label="visits")):
        try:
            run_visit(
                store,
                catalog.load,
                patient_id,
                protocol.id,
                date,
                console,
                doctor,
                clinician="dr-a",
            )
        except Cancelled:
            event("a visit on the last visit's date, not made an amendment")
        rows = [visit.row for visit in store.visits(patient_id)]
        doctor.starting = not rows
        correction = data.draw(st.sampled_from(["none", "none", "none", "amend", "void"]))
        if rows:
            event(f"correction: {correction}")
        if rows and correction == "amend":
            row = data.draw(st.sampled_from(rows), label="amend")
            run_amend(store, catalog.load, patient_id, row, console, doctor, "dr-b", "typo")
        elif rows and correction == "void":
            row = data.draw(st.sampled_from(rows), label="void")
            run_void(store, catalog.load, patient_id, row, "dr-b", "wrong patient", console)
        date += dt.timedelta(days=data.draw(st.sampled_from([0, 1, 3, 7, 7, 8, 14, 30])))
    return patient_id


@pytest.mark.parametrize("protocol_id", PROTOCOLS)
def test_exported_course_replays_to_the_stored_decisions(protocol_id: str, tmp_path: Path) -> None:
    """Sessions at the prompt (typed, reused and missing labs, overrides, amendments, voids)
    exported as a timeline replay to every stored decision and course record, exactly."""
    protocol = catalog.load(protocol_id)
    with Store(tmp_path / "roundtrip.sqlite") as store:
        store.connection.execute("PRAGMA synchronous = OFF")  # a throwaway store: no fsync

        @settings(
            max_examples=-(-SESSIONS // len(PROTOCOLS)),
            derandomize=not RANDOM,
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(st.data())
        def round_trip(data: st.DataObject) -> None:
            patient_id = _session(store, protocol, data)
            stored = store.visits(patient_id)
            if not stored:
                return
            for visit in stored:
                answer = visit.response
                event(f"answer: {answer.kind if answer else None}")
                if answer is not None and answer.confirmed:
                    event("answer: a dose confirmed")
                if visit.supersedes is not None:
                    event(f"stored: {visit.supersedes.kind}")
                if any(o.drawn_on < visit.date for o in visit.observations):
                    event("stored: a value reused from an earlier draw")
                event(f"action: {visit.decision['action']}")
            text = _exported(store, patient_id)
            timeline = read_timeline(text.splitlines(keepends=True), "exported.csv")
            assert not timeline.rejected, timeline.rejected
            (replayed,) = replay(protocol, timeline, keep_visits=True)
            assert replayed.stopped_at is None, replayed.rejected
            history = io.StringIO()
            with contextlib.redirect_stdout(history):
                show_history(store, catalog.load, patient_id, "jsonl", None)
            records = [json.loads(line) for line in history.getvalue().splitlines()]
            for record, decision, (_, after), visit in zip(
                records, replayed.decisions, replayed.visits, stored, strict=True
            ):
                expected = {key: record[key] for key in decision.to_json()}
                assert decision.to_json() == expected, text
                assert json.loads(record_to_json(after)) == json.loads(
                    record_to_json(visit.record)
                ), text

        round_trip()
