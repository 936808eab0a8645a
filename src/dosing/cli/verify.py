"""`dosing check`: prove protocols before they touch a patient."""

from __future__ import annotations

from typing import Annotated

import typer

from dosing.protocol import catalog


def check(
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
