"""Writing a replay: JSON lines, flattened CSV, rich tables, the summary and rejected rows.

Files are written atomically: into a temporary file beside the target, renamed over it only
when the whole run succeeded, so a failed run leaves no half file.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rich.console import Group
from rich.table import Table
from rich.text import Text

from dosing.core.characters import shown
from dosing.engine.decision import Decision
from dosing.render.tables import CourseTable, Row, rule_cell
from dosing.replay.replay import PatientReplay, Summary
from dosing.replay.timeline import Rejected, Timeline

CSV_FIELDS = (
    "patient_id", "date", "protocol", "protocol_version", "protocol_sha256", "state", "action",
    "doses", "next_check", "rules", "reasons", "warnings", "dose_given", "matches_given",
)  # fmt: skip


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    """A text stream whose content replaces `path` only if the block finishes without error."""
    folder = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            yield stream
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def jsonl_line(decision: Decision) -> str:
    """One decision record as a JSON line."""
    return json.dumps(decision.to_json(), ensure_ascii=False) + "\n"


def csv_row(decision: Decision) -> list[str]:
    """One decision record flattened: lists joined with ' | ', doses and rules as text."""
    record = decision.to_json()
    return [
        record["patient_id"] or "",
        record["date"],
        record["protocol"],
        record["protocol_version"],
        record["protocol_sha256"],
        record["state"],
        record["action"],
        " | ".join(str(dose) for dose in decision.doses),
        record["next_check"] or "",
        " | ".join(f"{rule.id} ({rule.source})" for rule in decision.rules),
        " | ".join(decision.reasons),
        " | ".join(decision.warnings),
        decision.dose_given or "",
        "" if decision.matches_given is None else str(decision.matches_given).lower(),
    ]


def patient_table(patient: PatientReplay) -> CourseTable:
    """One patient's course as a table a person reads top to bottom."""
    title = f"{patient.patient_id}"
    if patient.stopped_at is not None:
        title += f"  (replay stopped at line {patient.stopped_at})"
    rows = []
    for decision in patient.decisions:
        given = ""
        if decision.dose_given is not None:
            mark = {True: "= ", False: "≠ ", None: ""}[decision.matches_given]
            given = f"{mark}{decision.dose_given}"
        cells = (
            str(decision.date),
            decision.state,
            decision.action,
            ", ".join(dose.short() for dose in decision.doses) or "-",
            rule_cell([rule.id for rule in decision.rules], decision.state, decision.action),
            given,
        )
        rows.append(Row(cells, notes=decision.warnings))
    headers = ("date", "state", "action", "dose", "rule", "given")
    return CourseTable(title, headers, tuple(rows), coded="rule")


def summary_view(summary: Summary, timeline: Timeline) -> Group:
    """Counts per action and rule, every row accounted for, adherence, patients to look at."""
    rows = (
        summary.used + summary.duplicates + summary.superseded + summary.rejected
        + summary.not_replayed
    )  # fmt: skip
    parse_rejected = len(timeline.rejected)
    lines = [
        Text(f"{summary.patients} patients, {summary.decisions} decisions", style="bold"),
        Text(
            f"observations: {timeline.observations + parse_rejected} = used {summary.used}"
            f" + duplicates {summary.duplicates} + superseded {summary.superseded}"
            f" + rejected {summary.rejected + parse_rejected}"
            f" + not replayed {summary.not_replayed}"
            f"; {summary.carried_forward} lab values carried forward to a later visit"
        ),
    ]
    if rows != timeline.observations:
        lines.append(Text("warning: the observation count does not add up", style="bold red"))
    if timeline.resorted:
        lines.append(
            Text(f"rows not in date order were sorted for {len(timeline.resorted)} patients")
        )
    if summary.given:
        share = 100 * summary.matched / summary.given
        matched = f"{summary.matched} of {summary.given} recorded doses matched ({share:.0f}%)"
        after_refer = (
            f"; {summary.not_compared} after a refer not compared" if summary.not_compared else ""
        )
        lines.append(Text(f"adherence: {matched}{after_refer}"))
    actions = Table("action", "decisions", title="by action", title_justify="left")
    for action, count in summary.actions.most_common():
        actions.add_row(Text(action), str(count))
    rules = Table("rule", "decisions", title="by rule", title_justify="left")
    for rule, count in summary.rules.most_common():
        rules.add_row(Text(rule), str(count))
    parts: list[Text | Table] = [*lines, actions, rules]
    if summary.with_warnings:
        parts.append(Text(f"patients with warnings: {', '.join(summary.with_warnings)}"))
    if summary.stopped:
        parts.append(
            Text(f"patients whose replay stopped at a bad row: {', '.join(summary.stopped)}")
        )
    return Group(*parts)


def rejected_message(rejected: Rejected, source: str) -> str:
    """'timeline.csv:7: column value: '1.2': anc=1.2: a number needs its unit ...'."""
    if rejected.column.startswith(("entry", "Observation", "Patient")):  # a FHIR JSON path
        return f"{source}: {rejected.column}: {rejected.reason}"
    value = f"'{shown(rejected.value)}'" if rejected.value else "(empty)"
    return f"{source}:{rejected.line}: column {rejected.column}: {value}: {rejected.reason}"


REJECTS_FIELDS = ("line", "patient_id", "date", "name", "column", "value", "reason")


def write_rejects(path: Path, rejected: list[Rejected]) -> None:
    """Rejected rows as CSV for correction, in file order: the line, the patient, the date
    and the observation's name (where the row gave them), the column, the value, the reason."""
    with atomic_text(path) as stream:
        writer = csv.writer(stream)
        writer.writerow(REJECTS_FIELDS)
        for row in sorted(rejected):
            writer.writerow(
                (row.line, row.patient_id, row.date, row.name, row.column, row.value, row.reason)
            )
