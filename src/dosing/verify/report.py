"""`dosing check` at the CLI edge: run the checks on protocols and report them."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

import attrs
from rich.console import Group
from rich.padding import Padding
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from dosing.core.errors import DosingError
from dosing.protocol import catalog
from dosing.render.output import console, error_console
from dosing.verify.check import check
from dosing.verify.findings import Finding, Report
from dosing.verify.mutation import MutantProgress, MutationResult, mutation_score

_STYLE = {"error": "bold red", "warning": "yellow", "note": "dim"}


def check_protocols(
    references: Iterable[str], as_json: bool, mutate: bool, timelines: int | None = None
) -> int:
    """Check each protocol; print the report; return the number of errors."""
    references = list(references)
    reports: list[tuple[Report, MutationResult | None]] = []
    with _progress() as progress:
        checked = _checked_all(references, timelines, progress.protocol_done(len(references)))
        for reference, report in zip(references, checked, strict=True):
            mutation = None
            if mutate and not any(finding.check == "load" for finding in report.findings):
                mutation = mutation_score(
                    catalog.load(reference),
                    invariant_examples=timelines or 100,
                    progress=progress.mutants(reference),
                )
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


def _checked(reference: str, timelines: int | None) -> Report:
    try:
        protocol = catalog.load(reference)
    except DosingError as error:
        return Report(reference, (Finding("load", "error", reference, str(error)),))
    return check(protocol, timelines)


def _checked_all(
    references: list[str], timelines: int | None, done: Callable[[], None]
) -> list[Report]:
    """Each protocol checked on its own core: they share nothing, and the search dominates.
    `done` is called as each protocol's check finishes."""
    workers = min(len(references), os.cpu_count() or 1)
    if workers < 2:
        reports = []
        for reference in references:
            reports.append(_checked(reference, timelines))
            done()
        return reports
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = [pool.submit(_checked, reference, timelines) for reference in references]
        for _ in as_completed(futures):
            done()
        return [future.result() for future in futures]


class _Progress:
    """A progress bar on stderr while protocols are checked and mutants run: a check takes
    seconds per protocol and --mutate half a minute, which a blank screen does not say."""

    def __init__(self, bar: Progress | None) -> None:
        self.bar = bar
        self.tasks: dict[str, TaskID] = {}

    def protocol_done(self, total: int) -> Callable[[], None]:
        if self.bar is None:
            return lambda: None
        bar = self.bar
        task = bar.add_task("checking protocols", total=total)
        return lambda: bar.advance(task)

    def mutants(self, reference: str) -> MutantProgress:
        def told(what: str, done: int, total: int) -> None:
            if self.bar is None:
                return
            key = f"{reference}: {what}"
            if key not in self.tasks:
                self.tasks[key] = self.bar.add_task(key, total=total)
            self.bar.update(self.tasks[key], completed=done, total=total)

        return told


@contextlib.contextmanager
def _progress() -> Iterator[_Progress]:
    """Drawn only on a terminal that can redraw a line (stderr), and cleared when done."""
    if not error_console.is_terminal or error_console.is_dumb_terminal:
        yield _Progress(None)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=error_console, transient=True) as bar:
        yield _Progress(bar)


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
    parts: list[Text | Table | Padding] = [verdict]
    if mutation is not None:
        parts.append(Text(f"  mutation: {mutation}"))
    for finding in report.findings:  # a finding per block: reads at any width
        if not finding.timeline:
            parts.append(
                Text.assemble(
                    (f"{finding.severity} ", _STYLE[finding.severity]),
                    f"{finding.check} · {finding.where}",
                )
            )
            # plain: messages hold brackets rich would read as markup
            parts.append(Padding(Text(finding.message), (0, 0, 0, 2)))
    for finding in report.findings:  # a counterexample reads best one visit per line
        if finding.timeline:
            parts.append(
                Text.assemble(
                    (f"{finding.severity} ", _STYLE[finding.severity]),
                    f"{finding.check} · {finding.where}: {finding.message}",
                )
            )
            parts += [
                Text(f"  visit {number}: {line}") for number, line in enumerate(finding.timeline, 1)
            ]
    return Group(*parts)
