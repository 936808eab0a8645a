"""`dosing check` at the CLI edge: run the checks on protocols and report them."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

import attrs
from rich.console import Group
from rich.table import Table
from rich.text import Text

from dosing import catalog
from dosing.check import Finding, Report, check
from dosing.errors import DosingError
from dosing.mutation import MutationResult, mutation_score
from dosing.output import console

_STYLE = {"error": "bold red", "warning": "yellow", "note": "dim"}


def check_protocols(
    references: Iterable[str], as_json: bool, mutate: bool, timelines: int | None = None
) -> int:
    """Check each protocol; print the report; return the number of errors."""
    reports: list[tuple[Report, MutationResult | None]] = []
    for reference in references:
        try:
            protocol = catalog.load(reference)
        except DosingError as error:
            finding = Finding("load", "error", reference, str(error))
            reports.append((Report(reference, (finding,)), None))
            continue
        report = check(protocol, timelines)
        mutation = None
        if mutate:
            mutation = mutation_score(protocol, invariant_examples=timelines or 100)
            report = attrs.evolve(report, findings=(*report.findings, *mutation.findings()))
        reports.append((report, mutation))
    errors = sum(report.errors for report, _ in reports)
    if as_json:
        out = []
        for report, mutation in reports:
            record = report.to_json()
            if mutation is not None:
                record["mutation"] = mutation.to_json()
            out.append(record)
        sys.stdout.write(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    else:
        for report, mutation in reports:
            console.print(_view(report, mutation))
    return errors


def _view(report: Report, mutation: MutationResult | None) -> Group:
    verdict = Text.assemble(
        (report.protocol, "bold"),
        ": ",
        ("no errors", "green") if not report.errors else (f"{report.errors} errors", "bold red"),
        f" · {report.scenarios} scenarios · {report.transitions_exercised}/{report.transitions} "
        f"rules exercised · {report.boundary_cases} boundary cases · "
        f"{report.properties} {'property' if report.properties == 1 else 'properties'} and "
        f"{report.invariants} label {'invariant' if report.invariants == 1 else 'invariants'} "
        "searched",
    )
    parts: list[Text | Table] = [verdict]
    if mutation is not None:
        parts.append(Text(f"  mutation: {mutation}"))
    if report.findings:
        table = Table("severity", "check", "where", "finding", show_header=True, expand=False)
        for finding in report.findings:
            table.add_row(
                Text(finding.severity, _STYLE[finding.severity]),
                Text(finding.check),
                Text(finding.where),
                Text(finding.message),  # plain: messages hold brackets rich would read as markup
            )
        parts.append(table)
    return Group(*parts)
