"""The commands over the patient store: a visit at the prompt, its amendment or void, the list
of patients and their due dates, a patient's history."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal

import typer

from dosing.cli.options import (
    AcceptImplausibleOption,
    ClinicianOption,
    DbOption,
    PatientArgument,
    ReferDueOption,
    open_store,
    parse_date,
    who_answers,
)
from dosing.clinic.due import REFER_DUE_DAYS
from dosing.core.errors import ObservationError
from dosing.protocol import catalog


def visit(
    patient: Annotated[
        str | None, typer.Argument(help="The patient's id (asked if left out).")
    ] = None,
    protocol: Annotated[
        str | None, typer.Option(help="Protocol for a new patient (asked if left out).")
    ] = None,
    date: Annotated[
        str | None, typer.Option(help="Visit date, YYYY-MM-DD (default: today).")
    ] = None,
    accept_implausible: AcceptImplausibleOption = False,
    clinician: ClinicianOption = None,
    db: DbOption = None,
    refer_due: ReferDueOption = REFER_DUE_DAYS,
) -> None:
    """Enter a visit's labs at the prompt and decide the dose; the course is kept in the store.

    Asks only for what the protocol reads in the patient's current state, with units shown;
    Enter reuses a still-valid earlier result, with the date it was drawn. Nothing is stored
    until the clinician accepts or overrides the decision; Ctrl-C before that leaves the store
    as it was. A visit on the date of the last one amends it (it asks). Answers can be piped
    on stdin.

    Example: [cyan]dosing visit P01 --protocol imatinib-hes --clinician dr-lee[/]
    """
    from dosing.clinic.visit import rich_ask, run_visit
    from dosing.render.output import console

    visit_date = parse_date(date, "--date") if date else dt.date.today()
    who = who_answers(clinician)
    with open_store(db) as store:
        run_visit(
            store, catalog.load, patient, protocol, visit_date, console, rich_ask(console),
            clinician=who, accept_implausible=accept_implausible, refer_due_days=refer_due,
        )  # fmt: skip


def amend(
    patient: PatientArgument,
    visit_row: Annotated[
        int | None,
        typer.Option(
            "--visit", help="The visit to amend, as dosing history numbers it (default: the last)."
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="Why the visit is amended (asked if left out).")
    ] = None,
    accept_implausible: AcceptImplausibleOption = False,
    clinician: ClinicianOption = None,
    db: DbOption = None,
) -> None:
    """Re-enter a stored visit's labs and decide it again; the visits after it are decided
    again from the corrected course.

    Enter keeps each value the visit had. The later decisions that change are shown before
    anything is stored; the amended visit and each changed later visit are stored as new rows
    that supersede the old ones, with who and why (nothing is updated in place).

    Example: [cyan]dosing amend P01 --visit 3 --reason "ANC typed as 0.8, was 1.8"[/]
    """
    from dosing.clinic.visit import rich_ask, run_amend
    from dosing.render.output import console

    who = who_answers(clinician)
    with open_store(db) as store:
        run_amend(
            store, catalog.load, patient, visit_row, console, rich_ask(console), who, reason,
            accept_implausible,
        )  # fmt: skip


def void(
    patient: PatientArgument,
    visit_row: Annotated[
        int, typer.Option("--visit", help="The visit to void, as dosing history numbers it.")
    ],
    reason: Annotated[str, typer.Option(help="Why the visit is voided.")],
    clinician: ClinicianOption = None,
    db: DbOption = None,
) -> None:
    """Void a stored visit (entered for the wrong patient, or never happened); the visits
    after it are decided again without it.

    The later decisions that change are shown; the void and each changed later visit are
    stored as new rows with who and why (nothing is deleted).

    Example: [cyan]dosing void P01 --visit 3 --reason "entered for the wrong patient"[/]
    """
    from dosing.clinic.correcting import run_void
    from dosing.render.output import console

    who = who_answers(clinician)
    with open_store(db) as store:
        run_void(store, catalog.load, patient, visit_row, who, reason, console)


def patients(
    db: DbOption = None,
    refer_due: ReferDueOption = REFER_DUE_DAYS,
    date: Annotated[
        str | None,
        typer.Option(help="The day to count overdue visits from, YYYY-MM-DD (default: today)."),
    ] = None,
) -> None:
    """List the patients in the store with their state, dose and next due date, the soonest
    due first; overdue patients are flagged. After a referral (which sets no next check) the
    patient is due again --refer-due days later, so nobody falls off the list.

    Example: [cyan]dosing patients[/]
    """
    from dosing.clinic.due import next_due, overdue_days
    from dosing.clinic.store_records import dose_in_force
    from dosing.render.output import print_grid

    today = parse_date(date, "--date") if date else dt.date.today()
    with open_store(db, create=False) as store:
        courses = store.current_courses()
    rows = []
    for course in courses:
        checked = dt.date.fromisoformat(course.next_check) if course.next_check else None
        due = next_due(checked, course.action, course.last_visit, refer_due)
        late = overdue_days(due, today)
        rows.append(
            (
                due or dt.date.max,
                course.patient_id,
                (
                    course.patient_id,
                    course.protocol,
                    course.state or "-",
                    dose_in_force(course.doses, course.response) if course.last_visit else "-",
                    str(course.last_visit or "-"),
                    "-" if due is None else f"{due}{' (referred)' if checked is None else ''}",
                    f"OVERDUE {late} {'day' if late == 1 else 'days'}" if late else "",
                ),
            )
        )
    rows.sort(key=lambda row: (row[0], row[1]))
    print_grid(
        ("patient", "protocol", "state", "dose", "last visit", "next due", "overdue"),
        (cells for _, _, cells in rows),
    )


def history(
    patient: PatientArgument,
    output_format: Annotated[
        Literal["table", "jsonl", "csv", "timeline", "fhir"],
        typer.Option(
            "--format",
            help="table; jsonl or csv decision records (as replay writes them); timeline: a "
            "long-format CSV that dosing replay reads back; fhir: a FHIR R4 Bundle of the "
            "course (Patient, Observations, MedicationRequest proposals).",
        ),
    ] = "table",
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw the course into this file: .png, .svg, or .pdf (the plot with the "
            "table under it)."
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Show a patient's course: visits, labs, decisions and the clinician's answers.

    Example: [cyan]dosing history P01 --format timeline > P01.csv[/]
    """
    from dosing.clinic.history import show_history

    if plot is not None:
        from dosing.core.files import check_writable

        if plot.suffix.lower() not in (".png", ".svg", ".pdf"):
            raise ObservationError(f"--plot {plot}: name a .png, .svg or .pdf file")
        check_writable(plot, "--plot")
    with open_store(db, create=False) as store:
        show_history(store, catalog.load, patient, output_format, plot)
