"""Replay: whole decision streams against expected files, bad input line by line, the CLI.

Regenerate the expected streams after a deliberate protocol change, then review the diff:
    python -m tests.replay.test_replay
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from dosing.protocol.catalog import load
from dosing.replay.replay import Summary, replay
from dosing.replay.run import load_timeline
from dosing.replay.timeline import read_timeline
from dosing.replay.writers import jsonl_line
from tests.conftest import ROOT

HERE = Path(__file__).parent
COUNTS = "x10^9/L, 10^9/L, 10*9/L, G/L, 10^3/uL, K/uL, /mm3, /uL, cells/uL"
TIMELINES = {
    "imatinib-hes": ROOT / "examples" / "imatinib-hes-timeline.csv",
    "tacrolimus-trough": ROOT / "examples" / "tacrolimus-trough-wide.csv",
    "ruxolitinib-hes": HERE / "ruxolitinib-hes.csv",
    "imatinib-escalation-nilg": HERE / "imatinib-escalation-nilg.csv",
    "imatinib-low-dose-mdacc": HERE / "imatinib-low-dose-mdacc.csv",
    "ruxolitinib-hlh": HERE / "ruxolitinib-hlh.csv",
}


def stream(protocol_id: str) -> list[dict[str, Any]]:
    """The replay's JSON lines, with the protocol hash left out (it changes with any edit)."""
    protocol = load(protocol_id)
    records = []
    for patient in replay(protocol, load_timeline(TIMELINES[protocol_id], None)):
        for decision in patient.decisions:
            record = json.loads(jsonl_line(decision))
            record["protocol_sha256"] = "<sha256>"
            records.append(record)
    return records


def expected_path(protocol_id: str) -> Path:
    return HERE / f"{protocol_id}.expected.jsonl"


@pytest.mark.parametrize("protocol_id", sorted(TIMELINES))
def test_decision_stream_matches_the_expected_file(protocol_id: str) -> None:
    """Every decision of the replay, field by field, is the reviewed one."""
    expected = [json.loads(line) for line in expected_path(protocol_id).read_text().splitlines()]
    assert stream(protocol_id) == expected


def test_every_shipped_protocol_has_a_replay_test() -> None:
    """A new protocol needs a timeline here."""
    assert set(TIMELINES) == {path.stem for path in (ROOT / "protocols").glob("*.yaml")}


def read(text: str) -> tuple[Any, Summary]:
    timeline = read_timeline(text.splitlines(keepends=True), "t.csv")
    summary = Summary()
    for patient in replay(load("imatinib-hes"), timeline):
        summary.add(patient)
    return timeline, summary


GOOD = """patient_id,date,name,value,unit
P1,2026-01-05,age,50,years
P1,2026-01-05,anc,3000,/mm3
P1,2026-01-05,platelets,200,x10^9/L
P1,2026-01-05,alt,20,U/L
P1,2026-01-05,ast,20,U/L
P1,2026-01-05,bilirubin,0.5,mg/dL
P1,2026-01-05,bleeding,no,
P1,2026-01-05,eligibility_confirmed,yes,
"""


def test_a_clean_file_uses_every_row() -> None:
    """Eight rows, one visit, one start at 400 mg."""
    timeline, summary = read(GOOD)
    assert (timeline.rows, summary.used, summary.decisions) == (8, 8, 1)
    assert summary.actions == {"start": 1}


def test_byte_order_mark_semicolons_and_quotes() -> None:
    """A BOM, ';' as the delimiter and quoted fields read the same as the plain file."""
    text = "\ufeff" + GOOD.replace(",", ";").replace("3000;/mm3", '"3000";"/mm3"')
    timeline, summary = read(text)
    assert (timeline.delimiter, summary.used, summary.actions) == (";", 8, {"start": 1})


def test_rows_out_of_date_order_are_sorted_and_said() -> None:
    """A later visit written first is sorted into place, and the patient is named."""
    later = "P1,2026-01-12,anc,2500,/mm3\n"
    timeline, summary = read(GOOD.replace("P1,2026-01-05,age", later + "P1,2026-01-05,age", 1))
    assert timeline.resorted == ["P1"]
    assert summary.actions == {"start": 1, "continue": 1}


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        (
            "P1,2026-01-12,anc,3000\n",
            "t.csv:10: column (row): 'P1,2026-01-12,anc,3000': 4 fields, expected 5 "
            "(patient_id,date,name,value,unit)",
        ),
        (
            "P1,2026-01-12,anc,3.0,\n",
            f"t.csv:10: column value: '3.0': anc=3.0: a number needs its unit; accepted: {COUNTS}",
        ),
        (
            "P1,2026-13-12,anc,3000,/mm3\n",
            "t.csv:10: column date: '2026-13-12': expected an ISO date (YYYY-MM-DD) or date-time "
            "(YYYY-MM-DDTHH:MM)",
        ),
        (
            "P1,2026-01-12,neutro,3000,/mm3\n",
            "t.csv:10: column name: 'neutro': not a known observation; known: anc, platelets",
        ),
    ],
    ids=["ragged row", "unitless lab", "unparseable date", "unknown name"],
)
def test_a_bad_row_is_reported_and_no_good_row_is_lost(bad_line: str, message: str) -> None:
    """Each bad row is named by line, column and value; every good row before it is used."""
    from dosing.replay.writers import rejected_message

    timeline = read_timeline((GOOD + bad_line).splitlines(keepends=True), "t.csv")
    rejected = list(timeline.rejected)
    summary = Summary()
    for patient in replay(load("imatinib-hes"), timeline):
        summary.add(patient)
        rejected.extend(patient.rejected)
    assert len(rejected) == 1
    assert rejected_message(rejected[0], "t.csv").startswith(message)
    assert (summary.used, summary.decisions, summary.actions) == (8, 1, {"start": 1})


def test_a_bad_row_stops_that_patient_only() -> None:
    """P1's unitless ANC stops P1 at that visit; P2 in the same file is replayed in full."""
    other = GOOD.replace("P1,", "P2,").split("\n", 1)[1]
    text = GOOD + "P1,2026-01-12,anc,3.0,\nP1,2026-01-19,anc,3000,/mm3\n" + other
    timeline = read_timeline(text.splitlines(keepends=True), "t.csv")
    patients = {p.patient_id: p for p in replay(load("imatinib-hes"), timeline)}
    assert len(patients["P1"].decisions) == 1
    assert patients["P1"].stopped_at == 10
    assert [r.reason for r in patients["P1"].rejected][1].startswith(
        "not replayed: P1's replay stopped at line 10"
    )
    assert len(patients["P2"].decisions) == 1
    assert patients["P2"].used == 8


def test_empty_file_is_refused() -> None:
    """An empty file has no header: a clear error, not an empty success."""
    from dosing.core.errors import TimelineError

    with pytest.raises(TimelineError, match=r"t.csv is empty: expected a header line"):
        read_timeline([], "t.csv")


def test_header_only_file_has_no_rows() -> None:
    """A header with no rows replays nothing, and says so in the counts."""
    timeline, summary = read("patient_id,date,name,value,unit\n")
    assert (timeline.rows, summary.patients, summary.decisions) == (0, 0, 0)


def test_wide_header_with_unknown_column_is_refused() -> None:
    """A wide column that is no observation fails the file, naming the column."""
    from dosing.core.errors import TimelineError

    with pytest.raises(
        TimelineError, match=r"t.csv:1: column 'neutro \[10\^9/L\]' is not a known observation"
    ):
        read_timeline(["patient_id,date,neutro [10^9/L]\n", "P1,2026-01-05,1.2\n"], "t.csv")


def test_datetimes_are_read_as_their_date() -> None:
    """2026-01-05T08:30 is the visit of 2026-01-05."""
    _, summary = read(GOOD.replace("2026-01-05,anc", "2026-01-05T08:30,anc"))
    assert summary.decisions == 1


def dosing(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dosing", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,  # a hang fails the test instead of the CI run
    )


def test_cli_replays_the_example_with_a_summary() -> None:
    """The README's example: a table per patient, and the counts."""
    result = dosing("replay", "imatinib-hes", "examples/imatinib-hes-timeline.csv", "--summary")
    assert result.returncode == 0, result.stderr
    assert "resume-300-recurrence" in result.stdout
    assert (
        "observations: 119 = used 119 + duplicates 0 + superseded 0 + rejected 0 + not replayed 0"
        in result.stdout
    )
    assert (
        "adherence: 15 of 16 recorded doses matched (94%); 1 after a refer not compared"
        in result.stdout
    )


def test_cli_csv_output(tmp_path: Path) -> None:
    """--format csv --output writes the flattened records with a header."""
    out = tmp_path / "decisions.csv"
    result = dosing(
        "replay",
        "tacrolimus-trough",
        "examples/tacrolimus-trough-wide.csv",
        "--format",
        "csv",
        "--output",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert lines[0].startswith(
        "patient_id,date,protocol,protocol_version,protocol_sha256,state,action,doses"
    )
    assert len(lines) == 1 + 9


def test_strict_fails_at_the_first_bad_row_and_writes_nothing(tmp_path: Path) -> None:
    """--strict: exit 2 with the line-numbered message; the output file is never created."""
    bad = tmp_path / "bad.csv"
    bad.write_text(GOOD + "P1,2026-01-12,anc,3.0,\n")
    out = tmp_path / "out.jsonl"
    result = dosing(
        "replay", "imatinib-hes", str(bad), "--strict", "--format", "jsonl", "--output", str(out)
    )
    assert result.returncode == 2
    assert f"{bad}:10: column value: '3.0': anc=3.0: a number needs its unit" in result.stderr
    assert "(--strict: nothing was written)" in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]


def test_rejects_file_and_stderr_report(tmp_path: Path) -> None:
    """Without --strict the good rows are replayed, the bad one goes to --rejects with its
    date and name, and the exit code is 1 so that a script notices."""
    bad = tmp_path / "bad.csv"
    bad.write_text(GOOD + "P1,2026-01-12,anc,3.0,\nP1,2026-01-12,platelets,180,G/L\n")
    rejects = tmp_path / "rejects.csv"
    result = dosing(
        "replay", "imatinib-hes", str(bad), "--format", "jsonl", "--rejects", str(rejects)
    )
    assert result.returncode == 1
    assert len(result.stdout.splitlines()) == 1
    assert result.stderr.startswith(
        f"1 row rejected, 1 row not replayed after a bad row (written to {rejects}):\n"
    )
    assert "use --rejects" not in result.stderr
    assert rejects.read_text().splitlines() == [
        "line,patient_id,date,name,column,value,reason",
        f'10,P1,2026-01-12,anc,value,3.0,"anc=3.0: a number needs its unit; accepted: {COUNTS}"',
        "11,P1,2026-01-12,platelets,value,180 G/L,not replayed: P1's replay stopped at line 10",
    ]


def test_rejects_file_names_an_unknown_observation_and_a_bad_date(tmp_path: Path) -> None:
    """Rows the reader refuses keep what it could read: the date of an unknown name, the name
    of a bad date."""
    bad = tmp_path / "bad.csv"
    bad.write_text(GOOD + "P1,2026-01-12,ancc,3000,/mm3\nP1,2026-13-01,anc,3000,/mm3\n")
    rejects = tmp_path / "rejects.csv"
    result = dosing("replay", "imatinib-hes", str(bad), "--rejects", str(rejects))
    assert result.returncode == 1
    assert result.stderr.startswith(f"2 rows rejected (written to {rejects}):\n")
    rows = [line.split(",")[:5] for line in rejects.read_text().splitlines()[1:]]
    assert rows == [
        ["10", "P1", "2026-01-12", "ancc", "name"],
        ["11", "P1", "2026-13-01", "anc", "date"],
    ]


def test_a_clean_replay_exits_0_and_reports_nothing(tmp_path: Path) -> None:
    """Every row used: exit 0, nothing on stderr."""
    path = tmp_path / "t.csv"
    path.write_text(GOOD)
    result = dosing("replay", "imatinib-hes", str(path), "--format", "jsonl")
    assert (result.returncode, result.stderr) == (0, "")


def test_missing_timeline_file() -> None:
    """A path that does not exist is one line on stderr."""
    result = dosing("replay", "imatinib-hes", "no/such.csv")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: no timeline file no/such.csv"


if __name__ == "__main__":
    for protocol_id in sorted(TIMELINES):
        lines = [json.dumps(record, ensure_ascii=False) for record in stream(protocol_id)]
        expected_path(protocol_id).write_text("\n".join(lines) + "\n")
        print(f"wrote {expected_path(protocol_id)} ({len(lines)} decisions)")


def test_mid_treatment_start_from_the_file_or_the_command_line(tmp_path: Path) -> None:
    """start_state/therapy_start rows, or --start-state, place a patient mid-course."""
    on_400 = GOOD.replace("P1,2026-01-05,age,50,years\n", "P1,2026-01-05,start_state,dose_400,\n")
    on_400 = on_400.replace("anc,3000,/mm3", "anc,900,/mm3")
    timeline = read_timeline(on_400.splitlines(keepends=True), "t.csv")
    (patient,) = replay(load("imatinib-hes"), timeline)
    assert [(d.state, d.action) for d in patient.decisions] == [("hold_heme", "hold")]
    plain = tmp_path / "t.csv"
    plain.write_text(GOOD.replace("anc,3000,/mm3", "anc,900,/mm3"))
    result = dosing(
        "replay", "imatinib-hes", str(plain), "--start-state", "dose_400", "--format", "jsonl"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["action"] == "hold"


def test_loinc_codes_name_observations() -> None:
    """751-8 in the name column is the ANC."""
    _, summary = read(GOOD.replace(",anc,", ",751-8,"))
    assert (summary.used, summary.actions) == (8, {"start": 1})


TROUGHS = "ng/mL, ug/L, µg/L, pg/mL, nmol/L, mg/dL, umol/L, µmol/L, g/dL, g/L, mg/L, mmol/L"


@pytest.mark.parametrize(
    ("value", "unit", "reason"),
    [
        ("1 500", "/mm3", "a space inside the number (a thousands separator?): write 1500 /mm3"),
        (
            "150 000",
            "/mm3",
            "a space inside the number (a thousands separator?): write 150000 /mm3",
        ),
        ("1.500", "/mm3", "'1.500/mm3' is ambiguous: a count per mm3 has no decimals"),
        ("1.2", "x10^9/L*2", "'*2' after the unit x10^9/L is not understood"),
    ],
)
def test_a_misread_value_in_a_long_cell_stops_its_patient(
    value: str, unit: str, reason: str
) -> None:
    """Issue 10 items 1-2: a long-format ANC of '1 500' /mm3 was read as 0.5; now refused."""
    bad = GOOD.replace("P1,2026-01-05,anc,3000,/mm3", f"P1,2026-01-05,anc,{value},{unit}")
    timeline = read_timeline(bad.splitlines(keepends=True), "t.csv")
    (patient,) = replay(load("imatinib-hes"), timeline)
    assert patient.decisions == []
    assert patient.stopped_at == 3
    assert patient.rejected[0].reason.startswith(f"anc={value} {unit}: {reason}")


def test_a_misread_value_in_a_wide_cell_stops_its_patient() -> None:
    """Issue 10 item 1: a wide trough cell of '8 .5' under 'ng/mL' was read as 4 ng/mL."""
    text = (
        "patient_id,date,tacrolimus_trough [ng/mL],sample_timing\n"
        "T1,2026-01-05,8 .5,trough\n"
        "T2,2026-01-05,8.5,trough\n"
    )
    timeline = read_timeline(text.splitlines(keepends=True), "t.csv")
    first, second = replay(load("tacrolimus-trough"), timeline)
    assert first.decisions == []
    assert first.rejected[0].reason == (
        "tacrolimus_trough=8 .5 ng/mL: '.5 ng/mL' after the number 8 is not a unit (a number "
        f"split by a space?); expected a number and a unit ({TROUGHS})"
    )
    assert second.decisions


OTHER = GOOD.replace("P1,", "P2,").split("\n", 1)[1]
BAD_ROWS = {
    "5000 digits": (
        "P1,2026-01-12,anc," + "1" * 5000 + ",/mm3\n",
        "t.csv:10: column value: '"
        + "1" * 40
        + "... (5005 characters)': anc="
        + "1" * 40
        + "... (5005 characters): a number of 5000 digits is not a measurement; "
        f"dosing reads at most 30 digits; expected a number and a unit ({COUNTS})",
    ),
    "placeholder date": (
        "P1,9999-12-31,anc,3000,/mm3\n",
        "t.csv:10: column date: '9999-12-31': not a plausible visit date (placeholders such as "
        "9999-12-31 and 1900-01-01 are not visits); expected a date from 1901 to 2199",
    ),
    "field over 128 KB": (
        "P1,2026-01-12,anc," + "1" * 140_000 + ",/mm3\n",
        "t.csv:10: column (row): '" + "P1,2026-01-12,anc," + "1" * 22 + "... (140023 "
        "characters)': a field longer than 131072 characters (an unclosed quote?)",
    ),
}


@pytest.mark.parametrize("bad", sorted(BAD_ROWS))
def test_one_bad_row_stops_only_its_patient(bad: str) -> None:
    """Issue 10 item 15: a 5,000-digit value, a placeholder date or a 128 KB field aborted the
    whole replay; now it stops P1 at that row, and P2 is replayed in full."""
    from dosing.replay.writers import rejected_message

    line, message = BAD_ROWS[bad]
    timeline = read_timeline((GOOD + line + OTHER).splitlines(keepends=True), "t.csv")
    patients = {p.patient_id: p for p in replay(load("imatinib-hes"), timeline)}
    rejected = [*timeline.rejected, *patients["P1"].rejected]
    assert [rejected_message(row, "t.csv") for row in rejected] == [message]
    assert (len(patients["P1"].decisions), patients["P1"].stopped_at) == (1, 10)
    assert (len(patients["P2"].decisions), patients["P2"].used) == (1, 8)


@pytest.mark.parametrize("bad", sorted(BAD_ROWS))
def test_a_bad_row_still_writes_the_output(tmp_path: Path, bad: str) -> None:
    """Issue 10 item 15: with --output, nothing was written; now every decision is."""
    path = tmp_path / "t.csv"
    path.write_text(GOOD + BAD_ROWS[bad][0] + OTHER)
    out = tmp_path / "decisions.jsonl"
    result = dosing("replay", "imatinib-hes", str(path), "--format", "jsonl", "--output", str(out))
    assert result.returncode == 1, result.stderr
    assert [json.loads(line)["patient_id"] for line in out.read_text().splitlines()] == [
        "P1",
        "P2",
    ]
    assert result.stderr.startswith("1 row rejected (use --rejects FILE to save them):\n")


def test_a_visit_the_engine_cannot_date_stops_only_its_patient() -> None:
    """A next check past 9999-12-31 once aborted everything; now it stops its patient."""
    from dosing.core.errors import EngineError
    from dosing.engine.observations import read_observation
    from dosing.engine.patient import PatientRecord
    from dosing.engine.step import step

    protocol = load("imatinib-hes")
    day = dt.date(9999, 12, 28)
    labs = [("age", "50"), ("anc", "3000/mm3"), ("platelets", "200 x10^9/L"), ("alt", "20 U/L")]
    labs += [("ast", "20 U/L"), ("bilirubin", "0.5 mg/dL"), ("bleeding", "no")]
    labs += [("eligibility_confirmed", "yes")]
    seen = [read_observation(protocol, name, text, day) for name, text in labs]
    with pytest.raises(EngineError) as caught:
        step(protocol, PatientRecord(), day, seen)
    assert str(caught.value) == (
        "the next check, 7 days after 9999-12-28, would fall after 9999-12-31, the last date "
        "dosing can count to; is 9999-12-28 a placeholder date?"
    )


def replayed(text: str) -> list[Any]:
    timeline = read_timeline(text.splitlines(keepends=True), "t.csv")
    return list(replay(load("imatinib-hes"), timeline, keep_visits=True))


def test_two_different_rows_for_one_draw_refer_naming_both_and_their_lines() -> None:
    """Two ANC rows of one date with different values: that visit is refer, and a warning
    names both values and their lines (before, the later row won silently)."""
    (patient,) = replayed(GOOD + "P1,2026-01-05,anc,1.2,x10^9/L\n")
    (decision,) = patient.decisions
    assert (decision.action, decision.doses) == ("refer", ())
    assert decision.warnings == (
        "anc drawn 2026-01-05 has two different values: '3000 /mm3' (line 3) and "
        "'1.2 x10^9/L' (line 10); no dose from either until the clinician says which is right",
    )
    assert decision.reasons[0].startswith("Two different values of anc for one draw")
    ((observations, record),) = patient.visits
    assert "anc" not in record.observations  # the next visit needs an ANC of its own
    assert [o.entered for o in observations if o.name == "anc"] == ["3000 /mm3", "1.2 x10^9/L"]


def test_a_conflict_is_not_settled_by_an_older_value() -> None:
    """After a conflicting visit, the ANC from the week before is not used: refer again."""
    week = GOOD.replace("2026-01-05", "2026-01-12").split("\n", 1)[1]
    conflict = week + "P1,2026-01-12,anc,0.5,x10^9/L\n"
    later = "P1,2026-01-14,platelets,200,x10^9/L\n"
    (patient,) = replayed(GOOD + conflict + later)
    assert [d.action for d in patient.decisions] == ["start", "refer", "refer"]
    assert "ANC was not given: measure ANC" in patient.decisions[2].warnings


def test_the_same_value_twice_is_counted_as_a_duplicate() -> None:
    """An ANC row repeated (in another unit) is fine: counted, and the visit decided."""
    _, summary = read(GOOD + "P1,2026-01-05,anc,3,x10^9/L\n")
    assert (summary.used, summary.duplicates, summary.actions) == (8, 1, {"start": 1})


def test_drawn_on_dates_a_reused_value() -> None:
    """A drawn_on column keeps a reused value's own date: 12 days old is stale, refer."""
    header = "patient_id,date,name,value,unit,drawn_on\n"
    first = "".join(line + ",\n" for line in GOOD.splitlines()[1:])
    week = "P1,2026-01-12,anc,3000,/mm3,\nP1,2026-01-12,platelets,200,x10^9/L,2026-01-05\n"
    later = "P1,2026-01-17,anc,3000,/mm3,\n"
    (patient,) = replayed(header + first + week + later)
    assert [d.action for d in patient.decisions] == ["start", "continue", "refer"]
    assert (
        "platelets from 2026-01-05 is 12 days old (at most 7 days): not used; measure platelets "
        "again" in patient.decisions[2].warnings
    )


def test_a_value_drawn_after_its_visit_is_rejected() -> None:
    """drawn_on after the visit date is a bad row, named with its line and column."""
    from dosing.replay.writers import rejected_message

    header = "patient_id,date,name,value,unit,drawn_on\n"
    text = header + "P1,2026-01-05,anc,3000,/mm3,2026-01-06\n"
    timeline = read_timeline(text.splitlines(keepends=True), "t.csv")
    (rejected,) = timeline.rejected
    assert rejected_message(rejected, "t.csv") == (
        "t.csv:2: column drawn_on: '2026-01-06': drawn after the visit date (2026-01-05)"
    )


def test_birth_date_gives_each_visit_its_exact_age() -> None:
    """A birth_date row: the age at each visit is counted from it, as at the prompt."""
    text = GOOD.replace("P1,2026-01-05,age,50,years", "P1,2026-01-05,birth_date,2008-01-06,")
    (patient,) = replayed(text + "P1,2026-01-06,anc,3000,/mm3\n")
    ages = [o for observations, _ in patient.visits for o in observations if o.name == "age"]
    assert [age.value for age in ages] == [18 - Fraction(1, 365), 18]  # a day short of 18
    assert ages[1].entered == "18 years, born 2008-01-06"


def test_a_recorded_override_is_followed_and_a_dose_given_only_compared() -> None:
    """dose_given 300 mg qd with an override_reason moves the course to 300 mg, and the next
    decision says so; without one it is only compared (adherence), as before."""
    given = "P1,2026-01-05,dose_given,300 mg qd,\n"
    week = "P1,2026-01-12,anc,3000,/mm3\n"
    reason = "P1,2026-01-05,override_reason,tolerated 300 mg before,\n"
    (followed,) = replayed(GOOD + given + reason + week)
    (compared,) = replayed(GOOD + given + week)
    assert [(d.state, d.matches_given) for d in followed.decisions] == [
        ("dose_400", False), ("dose_300", None),
    ]  # fmt: skip
    assert followed.decisions[1].warnings[-1] == (
        "At the last visit (2026-01-05) the recommendation (400 mg qd) was overridden: 300 mg qd "
        "chosen (tolerated 300 mg before). This decision starts from state dose_300."
    )
    assert [d.state for d in compared.decisions] == ["dose_400", "dose_400"]
