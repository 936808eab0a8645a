"""Fuzzing: the value reader, the protocol loader with dosing check, and replay, on generated
and mutated input. None may raise anything but dosing's own errors, hang over 5 s, or change
a value silently.

In CI each part runs a fixed, derandomized set of examples (about a minute in all). For a
longer run, with fresh random examples until the time is spent:

    DOSING_FUZZ_SECONDS=3600 .venv/bin/pytest tests/test_fuzz.py -p no:cacheprovider

A failure prints the shrunk input and a @reproduce_failure line to replay it. A hang inside C
code, which the 5 s alarm cannot interrupt, ends the run and leaves a traceback in
$TMPDIR/dosing-fuzz-watchdog.txt.
"""

from __future__ import annotations

import faulthandler
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from dosing.core.errors import ProtocolError, TimelineError, UnitError
from dosing.core.units import KNOWN_SPELLINGS, split_value
from dosing.protocol.catalog import load
from dosing.protocol.diagram import dot, mermaid
from dosing.protocol.loader import load_protocol
from dosing.render.output import protocol_tables
from dosing.replay.replay import Summary, replay
from dosing.replay.timeline import read_timeline
from dosing.replay.writers import csv_row, jsonl_line, patient_table
from dosing.verify.check import check
from tests.conftest import ROOT, time_limit

pytestmark = pytest.mark.fuzz

SECONDS = float(os.environ.get("DOSING_FUZZ_SECONDS", "0"))
"""0: the fixed CI run. Otherwise the total time, shared by the three parts."""
HANG = 5
"""Seconds one example may take before it counts as a hang."""
WATCHDOG = Path(tempfile.gettempdir()) / "dosing-fuzz-watchdog.txt"

T = TypeVar("T")


def fuzz(strategy: st.SearchStrategy[T], prop: Callable[[T], None], examples: int) -> None:
    """Run `prop` on `examples` derandomized examples (CI), or on random ones for this part's
    share of DOSING_FUZZ_SECONDS. Each example is cut off after HANG seconds; a hang inside C
    code, which a signal cannot interrupt, ends the process with a traceback instead."""
    budget = SECONDS / 3
    # The last resort against a hang a signal cannot reach: a traceback in WATCHDOG, and exit.
    watchdog = WATCHDOG.open("w")
    faulthandler.dump_traceback_later(budget + 600, exit=True, file=watchdog)
    try:
        end = time.monotonic() + budget
        while True:

            @settings(
                max_examples=examples,
                derandomize=not SECONDS,
                database=None,
                deadline=None,
                print_blob=True,
                suppress_health_check=list(HealthCheck),
            )
            @given(strategy)
            def run(value: T) -> None:
                with time_limit(HANG):
                    prop(value)

            run()
            if time.monotonic() >= end:
                break
    finally:
        faulthandler.cancel_dump_traceback_later()
        watchdog.close()


# ---------------------------------------------------------------- the value reader

_PIECES = [
    *"0123456789", "12", "150", "1200", "000", "500", ".", ",", "'", "\u2019", " ", "  ", "\t",
    "\u00a0", "\u202f", "\u2009", "-", "+", "e", "E", "^", "*", "**", "/", ";", "=", "x", "X",
    "\u00d7", "10", "10^9", "10^09", "10^0009", "x10^9/L", "10^3/uL", "K/uL", "k/ul", "G/L",
    "g/L", "g/l", "/mm3", "/uL", "/µL", "cells/uL", "cells/mm3", "mm3", "mm^3", "mg/dL", "MG/DL",
    "ng/mL", "nmol/L", "U/L", "IU/L", "mL", "dL", "L", "l", "µ", "μ", "\u2079", "\u00b3", "°C",
    "degC", "C", "kg", "cm", "m", "m2", "years", "days", "day", "%", "K", "M", "mM", "mcg",
    "\u0661", "\uff12", "\u0430", "\u0445", "\x00", "\u200b", "10^10^10", "9999999", "1/",
]  # fmt: skip
_NUMBERS = st.from_regex(r"-?[0-9]{1,7}(\.[0-9]{1,5})?", fullmatch=True)
_UNITS = st.sampled_from(
    [*KNOWN_SPELLINGS, "", "mg/dl", "x 10^9/L", "10^09/L", "\u00d710\u2079/L", "1/mm^3"]
)
_JUNK = st.sampled_from(["", "", "", "*2", "/2", ";0.5", " 2", "2", ".5", ",5", "'", " x", "e9"])
VALUES = st.one_of(
    st.lists(st.sampled_from(_PIECES), max_size=8).map("".join),
    st.tuples(_NUMBERS, st.sampled_from(["", " ", "  ", "\u00a0"]), _UNITS, _JUNK).map("".join),
    st.text(max_size=12),
)

# After the number, a unit holds digits only as a known power of ten (10^9, x10^3), an
# exponent of its own (mm3, m^2), or the 1 of 1/mm^3: never a number that scales the value.
_UNIT_DIGITS = re.compile(
    r"^\s*(?:[xX\u00d7]\*?\s*)?10(?:(?:\^|\*\*?)0*[39]|\u2070*[\u00b3\u2079])"
    r"|(?<=[A-Za-z])\^?[23]\b|^\s*1(?=/)|[\u00b2\u00b3\u2079]"
)


def plain(value: Fraction) -> str:
    """A terminating fraction as the shortest exact decimal ('12.5', '-3', '0.001')."""
    places = 0
    while (value * 10**places).denominator != 1:
        places += 1
    digits = str(abs(value.numerator) * 10**places // value.denominator).rjust(places + 1, "0")
    text = f"{digits[:-places]}.{digits[-places:]}" if places else digits
    return f"-{text}" if value < 0 else text


def reads_exactly(text: str) -> None:
    """A string the reader accepts is one number in one unit, and reads back the same."""
    try:
        number, spelling = split_value(text)
    except UnitError as error:
        refused = str(error)
    else:
        refused = ""
    if refused:
        assert len(refused) < 600, refused  # named, and not a 128 KB echo
        return
    assert spelling == "" or spelling in KNOWN_SPELLINGS
    typed = re.match(r"\s*(-?[0-9]+(?:\.[0-9]+)?)", text)
    assert typed is not None, text
    assert number == Fraction(Decimal(typed[1])), text  # the number is what was typed
    rest = text[typed.end() :]
    assert not re.search(r"[0-9*;+,=]", _UNIT_DIGITS.sub("", rest)), (text, rest)
    again = f"{plain(number)} {spelling}".strip()
    assert split_value(again) == (number, spelling), (text, again)


def test_fuzz_the_value_reader() -> None:
    """Generated strings: refused with a message, or exactly one number in one known unit."""
    fuzz(VALUES, reads_exactly, examples=10_000)


def test_the_reader_property_catches_a_misreading(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property is real: the old reader, which read '8 .5 ng/mL' as 4 ng/mL, fails it;
    today's refuses the text, which passes."""
    reads_exactly("8 .5 ng/mL")

    def old_reader(text: str) -> tuple[Fraction, str]:
        return Fraction(4), "ng/mL"

    monkeypatch.setattr(f"{__name__}.split_value", old_reader)
    with pytest.raises(AssertionError):
        reads_exactly("8 .5 ng/mL")


# ---------------------------------------------------------------- protocols and dosing check

PROTOCOL_SEEDS = [
    (ROOT / "tests" / "protocol" / "invalid_protocols" / "valid_tiny.yaml").read_text(),
    (ROOT / "tests" / "verify" / "broken_protocols" / "gap.yaml").read_text(),
    (ROOT / "protocols" / "tacrolimus-trough.yaml").read_text(),
    (ROOT / "protocols" / "imatinib-escalation-nilg.yaml").read_text(),
    (ROOT / "protocols" / "imatinib-low-dose-mdacc.yaml").read_text(),
]
NASTY_LINES = [
    "x: &a [*a]", "<<: *nothing", "title: !!binary aGk=", "  facts: !!set {age}", "id: [x]",
    "        when: anc < 1.5 x10^09/L", "        priority: 1.5", "        priority: 010",
    "        when: " + "(" * 40 + "anc < 1 x10^9/L" + ")" * 40, "\x00", "---", "...",
    "deep: " + "[" * 60 + "]" * 60, "        when: anc < \u0661 x10^9/L", "%YAML 1.1",
    "        when: \u0430nc < 1 x10^9/L", "        when: not not not not anc < 1 x10^9/L",
    "        when: " + " and ".join(["(anc < 1 x10^9/L or age > 50 years)"] * 12),
    "        when: anc < 0.000000015 x10^9/L", "        when: anc < 1 10^10^10/L",
    "    initial: yes", "    initial: no", "lol: &l [x, x, x, x, x, x, x, x, x, x]",
    "lol2: [*l, *l, *l, *l, *l, *l, *l, *l, *l, *l]", "        when: count(anc < 1 x10^9/L) >= 1",
    "        when: anc < " + "9" * 40 + " x10^9/L", "  \t", "\ufeff", "states: {}", "title:",
]  # fmt: skip
TOKENS = [
    "<", "<=", ">", "==", "!=", "and", "or", "not", "in", "x10^9/L", "/mm3", "mg/dL", "1.5",
    "0", "-1", "1e9", ".5", "true", "no", "null", "~", "[]", "{}", "&a", "*a", ":", "- ", "#",
    "'", '"', "|", ">-", "(", ")", "count(", "\u0661", "\u0430", "1 500", "1.500", "[/]",
    "[red]", "note: [/]",
]  # fmt: skip
_CHARS = st.text(alphabet=st.sampled_from([*"()[]{}:,-'\"#&*!|>%@`\t\n \\", "\x00"]))


@st.composite
def mutated(draw: st.DrawFn, seeds: list[str], nasty: list[str], tokens: list[str]) -> str:
    """A seed file with one to four small mutations, of lines, words or characters."""
    lines = draw(st.sampled_from(seeds)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [""]
        at = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["delete", "copy", "swap", "insert", "word", "chars", "cut"]))
        if kind == "delete":
            del lines[at]
        elif kind == "copy":
            lines.insert(at, lines[at])
        elif kind == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[at], lines[other] = lines[other], lines[at]
        elif kind == "insert":
            lines.insert(at, draw(st.sampled_from(nasty)))
        elif kind == "word":
            words = re.split(r"(\s+|,)", lines[at])
            index = draw(st.integers(0, max(len(words) - 1, 0)))
            words[index] = draw(st.sampled_from(tokens))
            lines[at] = "".join(words)
        elif kind == "chars":
            column = draw(st.integers(0, len(lines[at])))
            added = draw(_CHARS.filter(bool)) if draw(st.booleans()) else ""
            lines[at] = lines[at][:column] + added + lines[at][column + draw(st.integers(0, 3)) :]
        else:
            lines = lines[: at + 1]
    return "\n".join(lines) + "\n"


def loads_or_says_why(text: str) -> None:
    """A mutated protocol loads and is checked, or is refused naming the file."""
    try:
        protocol = load_protocol(text, "fuzz.yaml")
    except ProtocolError as error:
        refused = str(error)
    else:
        refused = ""
    if refused:
        assert refused.startswith("fuzz.yaml"), refused
        return
    report = check(protocol, property_examples=0)
    json.dumps(report.to_json())
    assert all(finding.severity in ("error", "warning", "note") for finding in report.findings)
    screen = Console(file=io.StringIO(), width=120)  # what dosing show prints
    screen.print(protocol_tables(protocol))
    mermaid(protocol)
    dot(protocol)


def test_fuzz_the_protocol_loader_and_check() -> None:
    """Mutated protocol files: a ProtocolError naming the file, or a protocol dosing check
    can report on; never another exception or a hang."""
    fuzz(mutated(PROTOCOL_SEEDS, NASTY_LINES, TOKENS), loads_or_says_why, examples=1200)


# ---------------------------------------------------------------- replay


REPLAY_SEEDS = {
    "imatinib-hes": ROOT / "examples" / "imatinib-hes-timeline.csv",
    "tacrolimus-trough": ROOT / "examples" / "tacrolimus-trough-wide.csv",
    "ruxolitinib-hes": ROOT / "tests" / "replay" / "ruxolitinib-hes.csv",
    "ruxolitinib-hlh": ROOT / "tests" / "replay" / "ruxolitinib-hlh.csv",
    "imatinib-escalation-nilg": ROOT / "tests" / "replay" / "imatinib-escalation-nilg.csv",
}
CELLS = [
    "1 500", "1.500", "150.000", "1'200", "1200 2", "8 .5", "12 ng/mL/2", "8.5;0.5", "\u0661\u0662",
    "\uff11\uff12", "9999-12-31", "1900-01-01", "0001-01-01", "2026-02-30", "", "-1", "1" * 5000,
    "x" * 140_000, '"unclosed', "\x00", "\ufeff", ";", ",,,", "start_state", "dose_given",
    "therapy_start", "anc", "\u0430nc", "NaN", "1e309", "[red]", "[/]", "dose_400", "none",
    "10^09/L", "x10^9/L", "/mm3", "P01", "2026-01-05T08:30", "yes", "0.0005",
]  # fmt: skip
ROWS = [
    "P9,2026-01-05,anc,1 500,/mm3", "P9,9999-12-31,anc,1500,/mm3", "P01,2026-01-05,anc,1.500,/mm3",
    '"P01,2026', "patient_id,date,name,value,unit", "P01;2026-01-05;anc;1500;/mm3",
]  # fmt: skip


@st.composite
def timelines(draw: st.DrawFn) -> tuple[str, str]:
    protocol_id = draw(st.sampled_from(sorted(REPLAY_SEEDS)))
    seed = REPLAY_SEEDS[protocol_id].read_text(encoding="utf-8")
    delimiter = ";" if seed.count(";") > seed.count(",") else ","
    words = [*CELLS, delimiter, "\n"]
    return protocol_id, draw(mutated([seed], ROWS, words))


def replays_every_row(case: tuple[str, str]) -> None:
    """Every row is accounted for, every value used is the number typed in its unit, and
    every decision can be written in each output format."""
    protocol_id, text = case
    protocol = load(protocol_id)
    try:
        timeline = read_timeline(text.splitlines(keepends=True), "fuzz.csv")
    except TimelineError as error:
        refused = str(error)
    else:
        refused = ""
    if refused:
        assert refused.startswith("fuzz.csv"), refused
        return
    summary = Summary()
    screen = Console(file=io.StringIO(), width=120)
    for patient in replay(protocol, timeline, keep_visits=True):
        summary.add(patient)
        screen.print(patient_table(patient))
        for decision in patient.decisions:
            jsonl_line(decision)
            csv_row(decision)
        for observations, _ in patient.visits:
            for observation in observations:
                reading = protocol.readings.get(observation.name)
                if reading is None or not isinstance(observation.value, Fraction):
                    continue
                typed = re.match(r"\s*(-?[0-9]+(?:\.[0-9]+)?)", observation.entered)
                assert typed is not None, observation.entered
                spelling = split_value(observation.entered)[1] or reading.bare_unit or ""
                exact = reading.spellings[spelling].apply(Fraction(Decimal(typed[1])))
                assert observation.value == exact, observation.entered
                assert reading.plausible(observation.value), observation.entered
    accounted = (
        summary.used + summary.duplicates + summary.superseded + summary.rejected
        + summary.not_replayed
    )  # fmt: skip
    assert accounted == timeline.observations


def test_fuzz_replay() -> None:
    """Mutated timelines: a TimelineError naming the file, or a replay in which every row is
    used, superseded, rejected or not replayed after a bad row."""
    fuzz(timelines(), replays_every_row, examples=1200)
