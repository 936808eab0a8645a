"""`dosing step`: decide one visit from labs and facts given on the command line (or a FHIR
Bundle), with nothing stored."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from dosing.cli.options import ProtocolArgument, parse_date, parse_pairs
from dosing.core.errors import ObservationError
from dosing.engine.observations import Observation, read_memory, read_observation
from dosing.engine.patient import PatientRecord
from dosing.protocol import catalog

_INPUT = "Patient and labs"
_COURSE = "Where the patient is in the protocol"


def step(
    protocol: ProtocolArgument,
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
    visit = parse_date(date, "--date") if date else dt.date.today()
    observations: list[Observation] = []
    for name, value in [*parse_pairs(patient, "--patient"), *parse_pairs(lab, "--lab")]:
        drawn = visit
        if "@" in value:
            value, _, when = value.rpartition("@")
            drawn = parse_date(when, f"drawn date of {name}")
        observations.append(read_observation(loaded, name, value, drawn, accept_implausible))
    remembered = {
        name: read_memory(loaded, name, value) for name, value in parse_pairs(memory, "--memory")
    }
    course_dates = {}
    for option, text in (
        ("--state-since", state_since),
        ("--therapy-start", therapy_start),
        ("--dose-since", dose_since),
    ):
        if text:
            day = course_dates[option] = parse_date(text, option)
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
