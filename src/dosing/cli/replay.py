"""The timeline commands: replay timelines through a protocol, compare two revisions of a
protocol on one, import one into the patient store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from dosing.cli.options import DbOption, ProtocolArgument, open_store, parse_date, parse_pairs
from dosing.core.errors import Cancelled, ObservationError
from dosing.engine.observations import read_memory
from dosing.protocol import catalog

_OUTPUT = "Output"
_START = "Patients starting mid-treatment"
_CLUSTER = "Beyond one machine"


def replay(
    protocol: ProtocolArgument,
    timeline: Annotated[
        Path,
        typer.Argument(
            help="A CSV timeline, long or wide format; a Parquet file of the same columns (a "
            ".parquet file, needs the parquet extra); or a FHIR R4 Bundle (a .json file, "
            "needs the fhir extra); - reads standard input."
        ),
    ],
    output_format: Annotated[
        Literal["table", "jsonl", "csv", "parquet"],
        typer.Option(
            "--format",
            help="Rich tables, JSON lines, flattened CSV, or Parquet (the CSV's columns; needs "
            "--output and the parquet extra).",
            rich_help_panel=_OUTPUT,
        ),
    ] = "table",
    output: Annotated[
        Path | None,
        typer.Option(
            help="Write here instead of stdout (atomically); a name ending .gz or .zst is "
            "compressed with gzip or zstd.",
            rich_help_panel=_OUTPUT,
        ),
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
    jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Processes to replay on (default: the cores available). A patient is never "
            "split, and the output is the same as with --jobs 1.",
        ),
    ] = None,
    engine: Annotated[
        Literal["local", "dask"],
        typer.Option(
            help="local: this machine (--jobs processes). dask: a Dask cluster (the cluster "
            "extra), for 100M rows and more or data already on a cluster; writes JSON lines "
            "parts into the --output folder.",
            rich_help_panel=_CLUSTER,
        ),
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="With --engine dask: the scheduler's address (default: a LocalCluster of "
            "--jobs workers on this machine).",
            rich_help_panel=_CLUSTER,
        ),
    ] = None,
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
    from dosing.replay.parallel import available_cores
    from dosing.replay.run import ReplayOptions, run_replay

    loaded = catalog.load(protocol)
    remembered = {
        name: read_memory(loaded, name, text) for name, text in parse_pairs(memory, "--memory")
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
        therapy_start=parse_date(therapy_start, "--therapy-start") if therapy_start else None,
        memory=remembered,
        jobs=jobs or available_cores(),
    )
    if output_format == "parquet" and output is None:
        raise ObservationError("--format parquet writes a file: give --output FILE.parquet")
    if pdf and plot is None:
        raise ObservationError("--pdf writes a report beside each plot: give --plot FOLDER too")
    if start_state is not None and start_state not in loaded.states:
        raise ObservationError(
            f"--start-state {start_state}: states are {', '.join(loaded.states)}"
        )
    if engine == "dask":
        _replay_on_dask(protocol, timeline, options, scheduler)
        return
    if not run_replay(loaded, timeline, options):
        raise typer.Exit(1)


def _replay_on_dask(protocol: str, timeline: Path, options: Any, scheduler: str | None) -> None:
    """`--engine dask`: JSON lines parts into the --output folder; a summary on stderr."""
    from dosing.core.files import check_writable, write_failed
    from dosing.render.output import error_console
    from dosing.replay.cluster import replay_on_dask
    from dosing.replay.replay import StartPoint
    from dosing.replay.run import report_rejects
    from dosing.replay.writers import write_rejects

    if options.output is None or options.output_format not in ("table", "jsonl"):
        raise ObservationError(
            "--engine dask writes JSON lines parts into a folder: give --output FOLDER "
            "(and --format jsonl, or no --format)"
        )
    if options.rejects is not None:
        check_writable(options.rejects, "--rejects")
    start = StartPoint(options.start_state, options.therapy_start, options.memory)
    result = replay_on_dask(
        protocol, timeline, options.output, scheduler, options.jobs, start,
        options.accept_implausible,
    )  # fmt: skip
    error_console.print(
        f"{result.decisions} decisions for {result.patients} patients in {result.parts} parts "
        f"written to {options.output}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    if options.rejects is not None:
        try:
            write_rejects(options.rejects, result.rejected)
        except OSError as error:
            raise write_failed("--rejects", options.rejects, error) from None
    report_rejects(result.rejected, str(timeline), options.rejects)
    if result.rejected:
        raise typer.Exit(1)


def diff(
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


def import_timeline(
    protocol: ProtocolArgument,
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

        with open_store(db) as store:
            import_into_store(store, catalog.load(protocol), timeline)
    except KeyboardInterrupt:  # before the import began (it reports its own interruptions)
        raise Cancelled("the import was interrupted before it began; nothing was stored") from None
