"""The `dosing` command: a thin typer layer over the pure core.

Errors from the core are `DosingError`s; they are printed as one line on stderr with exit
code 2. Any other exception prints its type only (never locals or values, which could be
patient data) and exits 70.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn

import typer

from dosing.clinic.due import REFER_DUE_DAYS
from dosing.core.errors import Cancelled, DosingError, ObservationError
from dosing.engine.observations import Observation, read_memory, read_observation
from dosing.engine.patient import FIRST_DATE, LAST_DATE, PLACEHOLDER, PatientRecord
from dosing.protocol import catalog

if TYPE_CHECKING:
    from dosing.clinic.store import Store

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    help="Dose-adjustment decision support: protocols as state machines over exact lab units. "
    "[bold]dosing recommends; a person decides.[/]",
)

_INPUT = "Patient and labs"


def _show_version(asked: bool) -> None:
    if asked:
        from importlib.metadata import version

        sys.stdout.write(f"dosing {version('dosing')}\n")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Options before any command: --version, shell completion."""


def _protocol_ids(incomplete: str) -> list[str]:
    """Shell completion of a protocol argument: the shipped ids."""
    return [name for name in catalog.shipped_ids() if name.startswith(incomplete)]


_COURSE = "Where the patient is in the protocol"


def _pairs(items: list[str], option: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name.strip() or not value.strip():
            raise ObservationError(
                f"{option} '{item}': expected NAME=VALUE, e.g. {option} anc=1.2x10^9/L"
            )
        pairs.append((name.strip(), value.strip()))
    return pairs


def _date(text: str, what: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ObservationError(f"{what} '{text}' is not a date; write YYYY-MM-DD") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise ObservationError(f"{what} '{text}': {PLACEHOLDER}")
    return day


@app.command()
def protocols() -> None:
    """List the protocols that ship with dosing.

    Example: [cyan]dosing protocols[/]
    """
    from rich.table import Table
    from rich.text import Text

    from dosing.render.output import console

    table = Table("id", "title", "version", "states")
    for protocol_id in catalog.shipped_ids():
        protocol = catalog.load(protocol_id)
        cells = (protocol.id, protocol.title, protocol.version, str(len(protocol.states)))
        table.add_row(*map(Text, cells))
    console.print(table)


@app.command()
def show(
    protocol: Annotated[
        str,
        typer.Argument(
            help="A shipped protocol id or a path to a .yaml file.", autocompletion=_protocol_ids
        ),
    ],
    output_format: Annotated[
        Literal["table", "mermaid", "dot"],
        typer.Option("--format", help="Tables, or the state machine as Mermaid or Graphviz DOT."),
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option(
            help="Write the diagram here; with --format dot and a .svg, .png or .pdf name, "
            "render it with Graphviz."
        ),
    ] = None,
) -> None:
    """Show a protocol's states, transitions, inputs and site parameters, or draw it.

    Example: [cyan]dosing show imatinib-hes --format dot --output imatinib-hes.svg[/]
    """
    from dosing.render.output import console, protocol_tables

    loaded = catalog.load(protocol)
    if output_format == "table":
        console.print(protocol_tables(loaded))
        return
    from dosing.protocol.diagram import dot, mermaid

    text = mermaid(loaded) if output_format == "mermaid" else dot(loaded)
    if output is None:
        sys.stdout.write(text)
        return
    from dosing.core.files import check_writable, write_failed

    check_writable(output, "--output")
    if output_format == "dot" and output.suffix.lower() in (".svg", ".png", ".pdf"):
        _render(text, output)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise write_failed("--output", output, error) from None
    console.print(f"Wrote {output}", markup=False)


def _render(source: str, output: Path) -> None:
    """Render DOT with Graphviz, or say how to get it and keep the source."""
    import shutil
    import subprocess

    from dosing.render.output import console, error_console

    program = shutil.which("dot")
    if program is None:
        from dosing.core.files import write_failed

        fallback = output.with_suffix(".dot")
        try:
            fallback.write_text(source, encoding="utf-8")
        except OSError as error:
            raise write_failed("--output", fallback, error) from None
        error_console.print(
            f"Graphviz is not installed, so {output} was not drawn; the DOT source is in "
            f"{fallback}. Install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew "
            "install graphviz) and run the command again.",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    kind = output.suffix.lower().lstrip(".")
    result = subprocess.run(
        [program, f"-T{kind}", "-o", str(output)], input=source, text=True, capture_output=True
    )
    if result.returncode != 0:
        raise ObservationError(f"Graphviz could not draw {output}: {result.stderr.strip()}")
    console.print(f"Wrote {output}", markup=False)


@app.command()
def step(
    protocol: Annotated[
        str,
        typer.Argument(
            help="A shipped protocol id or a path to a .yaml file.", autocompletion=_protocol_ids
        ),
    ],
    lab: Annotated[
        list[str],
        typer.Option(
            help="A lab or assessment as NAME=VALUE UNIT, e.g. anc=1200/mm3 or bleeding=no; "
            "append @YYYY-MM-DD if it was drawn before the visit. Repeat for each.",
            rich_help_panel=_INPUT,
        ),
    ] = [],  # noqa: B006 - typer reads the default; it is never mutated
    patient: Annotated[
        list[str],
        typer.Option(
            help="A patient fact: age=45, sex=F, weight=70kg, height=170cm.", rich_help_panel=_INPUT
        ),
    ] = [],  # noqa: B006
    date: Annotated[
        str | None,
        typer.Option(help="Visit date, YYYY-MM-DD (default: today).", rich_help_panel=_INPUT),
    ] = None,
    patient_id: Annotated[
        str | None, typer.Option(help="Shown in the record.", rich_help_panel=_INPUT)
    ] = None,
    accept_implausible: Annotated[
        bool,
        typer.Option(
            help="Use a value outside its plausible range knowingly.", rich_help_panel=_INPUT
        ),
    ] = False,
    state: Annotated[
        str | None,
        typer.Option(
            help="The patient's current state (default: the protocol's start).",
            rich_help_panel=_COURSE,
        ),
    ] = None,
    memory: Annotated[
        list[str],
        typer.Option(
            help="A remembered value, e.g. heme_holds=1 or held_from=dose_400.",
            rich_help_panel=_COURSE,
        ),
    ] = [],  # noqa: B006
    therapy_start: Annotated[
        str | None, typer.Option(help="Date therapy started, YYYY-MM-DD.", rich_help_panel=_COURSE)
    ] = None,
    state_since: Annotated[
        str | None,
        typer.Option(help="Date the patient entered --state, YYYY-MM-DD.", rich_help_panel=_COURSE),
    ] = None,
    dose_since: Annotated[
        str | None,
        typer.Option(
            help="Date the current dose was started, YYYY-MM-DD.", rich_help_panel=_COURSE
        ),
    ] = None,
    fhir: Annotated[
        Path | None,
        typer.Option(
            help="A FHIR R4 Bundle (JSON) of the patient's Observations and Patient, read with "
            "LOINC codes and UCUM units; - reads standard input. Needs the fhir extra.",
            rich_help_panel=_INPUT,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the decision record as JSON.")
    ] = False,
    output_format: Annotated[
        Literal["panel", "json", "fhir"],
        typer.Option(
            "--format",
            help="A panel; the decision record as JSON (as --json); or FHIR: a MedicationRequest "
            "proposal with the record in an extension.",
        ),
    ] = "panel",
) -> None:
    """Decide one visit: the dose, the rule that fired, and each value's margin to its threshold.

    Example: [cyan]dosing step imatinib-hes --patient age=45 --lab anc=1200/mm3
    --lab platelets=180x10^9/L --lab alt=30U/L --lab ast=28U/L --lab bilirubin=0.7mg/dL
    --lab bleeding=no[/]
    """
    from dosing.engine.step import step as decide

    loaded = catalog.load(protocol)
    visit = _date(date, "--date") if date else dt.date.today()
    observations: list[Observation] = []
    for name, value in [*_pairs(patient, "--patient"), *_pairs(lab, "--lab")]:
        drawn = visit
        if "@" in value:
            value, _, when = value.rpartition("@")
            drawn = _date(when, f"drawn date of {name}")
        observations.append(read_observation(loaded, name, value, drawn, accept_implausible))
    remembered = {
        name: read_memory(loaded, name, value) for name, value in _pairs(memory, "--memory")
    }
    course_dates = {}
    for option, text in (
        ("--state-since", state_since),
        ("--therapy-start", therapy_start),
        ("--dose-since", dose_since),
    ):
        if text:
            day = course_dates[option] = _date(text, option)
            if day > visit:
                raise ObservationError(
                    f"{option} {day} is after the visit date {visit}; a course cannot start, "
                    "or be at its state or dose, after the visit it decides"
                )
    record = PatientRecord(
        state=state,
        state_since=course_dates.get("--state-since"),
        therapy_started_on=course_dates.get("--therapy-start"),
        dose_since=course_dates.get("--dose-since"),
        memory=remembered,
    )
    notes: list[str] = []
    if fhir is not None:
        from dosing.replay.fhir_input import read_fhir_file, refuse_problems, visit_input

        source = "standard input" if str(fhir) == "-" else str(fhir)
        labs = read_fhir_file(None if str(fhir) == "-" else fhir, source)
        given = visit_input(labs, loaded, visit, accept_implausible=accept_implausible)
        refuse_problems(given.problems, source)
        observations = [*given.observations, *observations]  # typed ones win on one date
        notes = given.notes
        if patient_id is None and len(labs.patients) == 1:
            patient_id = next(iter(labs.patients))
    decision, _ = decide(loaded, record, visit, observations, patient_id)
    if notes:
        import attrs

        decision = attrs.evolve(decision, warnings=(*decision.warnings, *notes))
    if as_json or output_format == "json":
        sys.stdout.write(json.dumps(decision.to_json(), ensure_ascii=False) + "\n")
        return
    if output_format == "fhir":
        from dosing.fhir.resources import recommendation

        text = json.dumps(recommendation(decision, loaded.drug), indent=2, ensure_ascii=False)
        sys.stdout.write(text + "\n")
        return
    from dosing.render.output import console, decision_panel

    console.print(decision_panel(decision))


_OUTPUT = "Output"
_START = "Patients starting mid-treatment"


@app.command()
def replay(
    protocol: Annotated[
        str,
        typer.Argument(
            help="A shipped protocol id or a path to a .yaml file.", autocompletion=_protocol_ids
        ),
    ],
    timeline: Annotated[
        Path,
        typer.Argument(
            help="A CSV timeline, long or wide format; or a FHIR R4 Bundle (a .json file, "
            "needs the fhir extra); - reads standard input."
        ),
    ],
    output_format: Annotated[
        Literal["table", "jsonl", "csv"],
        typer.Option(
            "--format", help="Rich tables, JSON lines, or flattened CSV.", rich_help_panel=_OUTPUT
        ),
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option(help="Write here instead of stdout (atomically).", rich_help_panel=_OUTPUT),
    ] = None,
    summary: Annotated[
        bool,
        typer.Option(
            help="Counts per action and rule, rows accounted for, adherence.",
            rich_help_panel=_OUTPUT,
        ),
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Draw each patient's course into this folder: PATIENT.png and PATIENT.svg "
            "(pip install 'dosing[plot]').",
            rich_help_panel=_OUTPUT,
        ),
    ] = None,
    pdf: Annotated[
        bool,
        typer.Option(
            help="With --plot, also PATIENT.pdf: the plot with the decision table under it.",
            rich_help_panel=_OUTPUT,
        ),
    ] = False,
    rejects: Annotated[
        Path | None,
        typer.Option(
            help="Write rejected rows here as CSV, for correction.", rich_help_panel=_OUTPUT
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Fail (exit 2) at the first bad row, writing nothing.")
    ] = False,
    format_in: Annotated[
        Literal["long", "wide"] | None,
        typer.Option(help="Force the input layout instead of detecting it."),
    ] = None,
    accept_implausible: Annotated[
        bool, typer.Option(help="Use values outside their plausible range knowingly.")
    ] = False,
    start_state: Annotated[
        str | None,
        typer.Option(help="Every patient's state at the first row.", rich_help_panel=_START),
    ] = None,
    therapy_start: Annotated[
        str | None, typer.Option(help="Date therapy started, YYYY-MM-DD.", rich_help_panel=_START)
    ] = None,
    memory: Annotated[
        list[str],
        typer.Option(
            help="A remembered value for every patient, e.g. heme_holds=1.", rich_help_panel=_START
        ),
    ] = [],  # noqa: B006 - typer reads the default; it is never mutated
) -> None:
    """Replay patient timelines from CSV: every decision, every row accounted for.

    Exits 0 when every row was used, superseded or carried forward; 1 when a row was rejected
    or a patient's replay stopped at a bad row (the decisions before it are written); 2 when
    the file cannot be used, or at the first bad row with --strict.

    Long format: patient_id,date,name,value,unit (one observation per row). Wide format:
    patient_id,date and a column per observation with its unit, e.g. "anc [10^9/L]". Rows
    named start_state or therapy_start set where a patient starts; dose_given records the dose
    actually given, and the decision says whether it matched.

    Example: [cyan]dosing replay imatinib-hes examples/imatinib-hes-timeline.csv --summary[/]
    """
    from dosing.replay.run import ReplayOptions, run_replay

    loaded = catalog.load(protocol)
    remembered = {
        name: read_memory(loaded, name, text) for name, text in _pairs(memory, "--memory")
    }
    options = ReplayOptions(
        output_format=output_format,
        output=output,
        summary=summary,
        plot=plot,
        pdf=pdf,
        rejects=rejects,
        strict=strict,
        format_in=format_in,
        accept_implausible=accept_implausible,
        start_state=start_state,
        therapy_start=_date(therapy_start, "--therapy-start") if therapy_start else None,
        memory=remembered,
    )
    if pdf and plot is None:
        raise ObservationError("--pdf writes a report beside each plot: give --plot FOLDER too")
    if start_state is not None and start_state not in loaded.states:
        raise ObservationError(
            f"--start-state {start_state}: states are {', '.join(loaded.states)}"
        )
    if not run_replay(loaded, timeline, options):
        raise typer.Exit(1)


@app.command("check")
def check_command(
    protocols: Annotated[
        list[str] | None,
        typer.Argument(help="Protocol ids or paths (default: every shipped protocol)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
    mutate: Annotated[
        bool,
        typer.Option(help="Also make small mutants and report the share the scenarios catch."),
    ] = False,
    timelines: Annotated[
        int,
        typer.Option(
            min=0,
            help="Generated timelines searched for a counterexample to the declared "
            "properties (0 skips the search).",
        ),
    ] = 100,
) -> None:
    """Prove protocols before they touch a patient: gaps, shadowed rules, dead ends, dose
    bounds, generated boundary tests in every unit, declared properties on generated
    timelines, scenarios and their coverage.

    Exits 1 when any error is found.

    Example: [cyan]dosing check imatinib-hes --mutate[/]
    """
    from dosing.verify.report import check_protocols

    errors = check_protocols(protocols or catalog.shipped_ids(), as_json, mutate, timelines)
    if errors:
        raise typer.Exit(1)


@app.command("diff")
def diff_command(
    old: Annotated[str, typer.Argument(help="The current protocol (id or path).")],
    new: Annotated[str, typer.Argument(help="The revised protocol (id or path).")],
    timeline: Annotated[
        Path | None,
        typer.Option(help="Replay this timeline under both and list every decision that differs."),
    ] = None,
) -> None:
    """Change impact of a protocol revision: the rules that changed, and the decisions.

    Example: [cyan]dosing diff imatinib-hes revised.yaml --timeline timeline.csv[/]
    """
    from rich.table import Table
    from rich.text import Text

    from dosing.render.output import console
    from dosing.replay.diff import decision_changes, rule_changes
    from dosing.replay.run import load_timeline

    before, after = catalog.load(old), catalog.load(new)
    rules = Table("where", "what", "old", "new", title="Rules that changed", title_justify="left")
    for change in rule_changes(before, after):
        rules.add_row(*(Text(cell) for cell in (change.where, change.what, change.old, change.new)))
    console.print(rules if rules.row_count else "No rule, dose, parameter or limit changed.")
    if timeline is not None:
        changed = decision_changes(before, after, load_timeline(timeline, None))
        table = Table(
            "patient",
            "date",
            "old decision",
            "new decision",
            title=Text(f"Decisions that differ on {timeline}"),
            title_justify="left",
        )
        for visit in changed:
            table.add_row(
                *(Text(cell) for cell in (visit.patient_id, visit.date, visit.old, visit.new))
            )
        console.print(table if changed else f"No decision on {timeline} differs.")


@app.command()
def schema() -> None:
    """Print the JSON Schema of protocol files, for editors to validate and complete them.

    Example: [cyan]dosing schema > protocol.schema.json[/]
    """
    from dosing.protocol.schema import protocol_schema

    sys.stdout.write(json.dumps(protocol_schema(), indent=2) + "\n")


_STORE = "Patient store"
DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="The patient store (default: $DOSING_DB, else the user's data directory).",
        rich_help_panel=_STORE,
    ),
]


ReferDueOption = Annotated[
    int,
    typer.Option(
        "--refer-due",
        envvar="DOSING_REFER_DUE_DAYS",
        min=0,
        max=365,
        help="Days after a referral that the patient is due again (a site parameter; "
        "default 1: the next day). Also read from $DOSING_REFER_DUE_DAYS.",
        rich_help_panel=_STORE,
    ),
]


def _open_store(db: Path | None, create: bool = True) -> Store:
    """The patient store; a command that only reads (`patients`, `history`) does not create
    one: it says where it looked."""
    from dosing.clinic.store import Store, default_path

    path = db or default_path()
    if not create and not (path.exists() or path.is_symlink()):
        where = (
            "--db" if db else "$DOSING_DB" if os.environ.get("DOSING_DB") else "the default place"
        )
        raise DosingError(
            f"no patient store at {path} ({where}); nothing was created. `dosing visit` or "
            "`dosing import-timeline` creates it; --db or $DOSING_DB names another"
        )
    return Store(path)


ClinicianOption = Annotated[
    str | None,
    typer.Option(
        help="Who answers, recorded with the answer (default: $DOSING_CLINICIAN, else the "
        "operating-system user).",
        rich_help_panel=_STORE,
    ),
]


def _clinician(option: str | None) -> str:
    """--clinician, else $DOSING_CLINICIAN, else the operating-system user."""
    import getpass

    for given in (option, os.environ.get("DOSING_CLINICIAN")):
        if given is not None and given.strip():
            return given.strip()
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no user name for this uid (some containers)
        raise ObservationError(
            "no clinician to record: give --clinician NAME or set DOSING_CLINICIAN"
        ) from None


@app.command()
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
    accept_implausible: Annotated[
        bool, typer.Option(help="Use a value outside its plausible range knowingly.")
    ] = False,
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

    visit_date = _date(date, "--date") if date else dt.date.today()
    who = _clinician(clinician)
    with _open_store(db) as store:
        run_visit(
            store, catalog.load, patient, protocol, visit_date, console, rich_ask(console),
            clinician=who, accept_implausible=accept_implausible, refer_due_days=refer_due,
        )  # fmt: skip


@app.command()
def amend(
    patient: Annotated[str, typer.Argument(help="The patient's id.")],
    visit_row: Annotated[
        int | None,
        typer.Option(
            "--visit", help="The visit to amend, as dosing history numbers it (default: the last)."
        ),
    ] = None,
    reason: Annotated[
        str | None, typer.Option(help="Why the visit is amended (asked if left out).")
    ] = None,
    accept_implausible: Annotated[
        bool, typer.Option(help="Use a value outside its plausible range knowingly.")
    ] = False,
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

    who = _clinician(clinician)
    with _open_store(db) as store:
        run_amend(
            store, catalog.load, patient, visit_row, console, rich_ask(console), who, reason,
            accept_implausible,
        )  # fmt: skip


@app.command()
def void(
    patient: Annotated[str, typer.Argument(help="The patient's id.")],
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

    who = _clinician(clinician)
    with _open_store(db) as store:
        run_void(store, catalog.load, patient, visit_row, who, reason, console)


@app.command()
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
    from dosing.clinic.store import dose_in_force
    from dosing.render.output import print_grid

    today = _date(date, "--date") if date else dt.date.today()
    with _open_store(db, create=False) as store:
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


@app.command()
def history(
    patient: Annotated[str, typer.Argument(help="The patient's id.")],
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
    with _open_store(db, create=False) as store:
        show_history(store, catalog.load, patient, output_format, plot)


@app.command("import-timeline")
def import_timeline(
    protocol: Annotated[
        str,
        typer.Argument(
            help="A shipped protocol id or a path to a .yaml file.", autocompletion=_protocol_ids
        ),
    ],
    timeline: Annotated[
        Path,
        typer.Argument(
            help="A CSV timeline or a FHIR R4 Bundle (.json), as dosing replay reads it."
        ),
    ],
    db: DbOption = None,
) -> None:
    """Load a CSV timeline into the store, replaying it, and show each patient's current state.

    Each decision is stored as accepted where the timeline's dose_given matches it (or none is
    recorded), and as overridden with that dose otherwise.

    Example: [cyan]dosing import-timeline imatinib-hes examples/imatinib-hes-timeline.csv[/]
    """
    try:
        from dosing.clinic.history import import_into_store

        with _open_store(db) as store:
            import_into_store(store, catalog.load(protocol), timeline)
    except KeyboardInterrupt:  # before the import began (it reports its own interruptions)
        raise Cancelled("the import was interrupted before it began; nothing was stored") from None


@app.command()
def serve(
    trust: Annotated[
        Path,
        typer.Option(
            help="The CDS clients trusted: a JSON file {issuer: JWK Set} of their public keys. "
            "Every request must carry a JWT signed by one of them (CDS Hooks).",
        ),
    ],
    host: Annotated[
        str, typer.Option(help="The address to listen on (default: this machine only).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="The port to listen on.")] = 8080,
    base_url: Annotated[
        str | None,
        typer.Option(
            help="The URL clients call (a token's aud must name it); default "
            "http://HOST:PORT. Behind a TLS proxy, give the https URL."
        ),
    ] = None,
    max_body: Annotated[
        int, typer.Option(min=1024, help="The largest request body accepted, in bytes.")
    ] = 1_000_000,
    access_log: Annotated[
        bool, typer.Option(help="Log each request's method, path and status (never its body).")
    ] = True,
    db: DbOption = None,
) -> None:
    """Run a CDS Hooks 2.0 service: dose advice as cards when an order is written, the
    clinician's feedback kept in the patient store. Needs the service extra.

    Example: [cyan]dosing serve --trust ehr-keys.json --port 8080 --db clinic.sqlite[/]
    """
    try:
        from dosing.service.app import ServiceConfig, run
        from dosing.service.auth import load_trust
    except ImportError:
        raise DosingError(
            "dosing serve needs the service extra: pip install 'dosing[service]' "
            "(or '.[service]' in a checkout)"
        ) from None
    from dosing.clinic.store import default_path

    config = ServiceConfig(
        db=db or default_path(),
        trust=load_trust(trust),
        base_url=(base_url or f"http://{host}:{port}").rstrip("/"),
        max_body=max_body,
    )
    with _open_store(config.db):  # a store that cannot be used fails before listening
        pass
    run(config, host, port, access_log)


# What an internal error means for each command: only step and visit give doses.
_AFTER_A_CRASH = {
    "step": "no dose was given",
    "visit": "no dose was given, and the visit may not have been recorded (see dosing history)",
    "amend": "the amendment may not have been recorded (see dosing history)",
    "void": "the visit may not have been voided (see dosing history)",
    "replay": "the replay did not finish, so its output is incomplete",
    "import-timeline": "the import did not finish (see dosing patients)",
    "check": "the check did not finish",
    "diff": "the comparison did not finish",
}
EX_IOERR = 74
"""Exit code when the results could not be written (a full disk, a closed pipe)."""


# A write that failed for want of room or of a reader; with no file named, it is standard
# output (every file a command writes is named in its own message).
_WRITE_FAILURES = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EFBIG", "EIO", "EPIPE", "EBADF")
    if hasattr(errno, name)
)


def _command() -> str:
    return next((word for word in sys.argv[1:] if not word.startswith("-")), "")


def _stdout_failed(error: OSError) -> NoReturn:
    """Standard output cannot be written (/dev/full, a closed pipe): say so once and stop,
    without Python's own complaint when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    if error.errno == errno.EPIPE:  # the reader went away (| head): nothing to tell it
        raise SystemExit(128 + 13) from None
    sys.stderr.write(f"error: cannot write to standard output: {error.strerror or error}\n")
    raise SystemExit(EX_IOERR) from None


def main() -> None:
    """Entry point: run the app and turn errors into one-line messages."""
    if sys.stdout is None:  # started with standard output closed (>&-)
        sys.stderr.write("error: cannot write to standard output: it is closed\n")
        raise SystemExit(EX_IOERR)
    try:
        try:
            app()
        finally:
            sys.stdout.flush()
    except OSError as error:
        if error.filename is None and error.errno in _WRITE_FAILURES:
            _stdout_failed(error)  # a write to a named file is reported by its command
        _internal_error(error)
    except KeyboardInterrupt:
        sys.stderr.write("cancelled: nothing was stored\n")
        raise SystemExit(130) from None
    except DosingError as error:
        if isinstance(error, Cancelled):
            sys.stderr.write(f"cancelled: {error}\n")
            raise SystemExit(130) from None
        from dosing.render.output import error as show_error

        show_error(str(error))
        raise SystemExit(2) from None
    except Exception as error:
        _internal_error(error)


def _internal_error(error: Exception) -> NoReturn:
    """The last line of defence: the type only, never values, which may be patient data."""
    if os.environ.get("DOSING_DEBUG"):
        raise error
    consequence = _AFTER_A_CRASH.get(_command())
    sys.stderr.write(
        f"error: internal error ({type(error).__name__})"
        + (f"; {consequence}" if consequence else "")
        + ". Please report it with the command you ran (set DOSING_DEBUG=1 for details).\n"
    )
    raise SystemExit(70) from None
