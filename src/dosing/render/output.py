"""Everything `dosing` prints: one console for results, one on stderr for errors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from dosing.core.units import format_number
from dosing.engine.decision import Decision
from dosing.protocol.guards import QuantityType
from dosing.protocol.model import DoseSpec, Protocol

console = Console(highlight=False)  # no automatic number colouring: values matter here
error_console = Console(stderr=True, highlight=False)

_ACTION_STYLE = {
    "start": "bold green",
    "continue": "green",
    "increase": "bold yellow",
    "decrease": "bold yellow",
    "resume": "bold green",
    "hold": "bold red",
    "discontinue": "bold red",
    "ineligible": "bold red",
    "refer": "bold magenta",
}


def error(message: str) -> None:
    """One line on stderr, no traceback. The message is plain text: it quotes what the user
    typed, where '[red]' is a value to show, not markup ('[/]' once crashed the error path)."""
    error_console.print(Text.assemble(("error:", "bold red"), f" {message}"), soft_wrap=True)


def _bullets(mark: str, lines: tuple[str, ...], style: str) -> Table:
    """One line per item; a long item wraps under its own text, not under the mark."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=3, justify="right")
    grid.add_column()
    for line in lines:
        grid.add_row(Text(mark, style=style), Text(line, style=style))
    return grid


def print_grid(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A table in rich's default box, drawn directly: rich takes seconds for 10,000 rows,
    and `dosing patients` must list that many in well under one. Cells are not wrapped; on a
    terminal too narrow for the box, the table is laid out to fit (tables.for_terminal)."""
    rows = list(rows)
    widths = [
        max([len(header), *(len(row[column]) for row in rows)])
        for column, header in enumerate(headers)
    ]
    if console.is_terminal and sum(widths) + 3 * len(widths) + 1 > console.width:
        from dosing.render.tables import CourseTable, Row, for_terminal

        table = CourseTable("", tuple(headers), tuple(Row(tuple(row)) for row in rows))
        console.print(for_terminal(table, console.width))  # fits: a person reads it
        return

    def line(left: str, fill: str, middle: str, right: str) -> str:
        return left + middle.join(fill * (width + 2) for width in widths) + right + "\n"

    def cells(values: Sequence[str], bar: str) -> str:
        padded = (f" {value:<{width}} " for value, width in zip(values, widths, strict=True))
        return bar + bar.join(padded) + bar + "\n"

    out = [line("┏", "━", "┳", "┓"), cells(headers, "┃"), line("┡", "━", "╇", "┩")]
    out.extend(cells(row, "│") for row in rows)
    out.append(line("└", "─", "┴", "┘"))
    console.file.write("".join(out))
    console.file.flush()


def decision_panel(decision: Decision) -> Panel:
    """A decision as a person reads it: what to do, why, and what to watch."""
    action = decision.action.upper()
    headline = Text.assemble((action, _ACTION_STYLE.get(decision.action, "bold")), "  ")
    if decision.doses:
        headline.append(", ".join(str(dose) for dose in decision.doses), style="bold")
    elif decision.action == "refer":
        headline.append("no dose: the clinician decides")
    else:
        headline.append("no dose")
    facts = Text(f"state {decision.state}")
    facts.append(f"   next check {decision.next_check or '-'}")
    parts: list[Text | Table] = [headline, facts]
    for rule in decision.rules:
        parts.append(
            Text.assemble(("rule ", "dim"), (rule.id, "bold"), ("  ", ""), (rule.source, "dim"))
        )
    if decision.reasons:
        parts.append(Text("why", style="bold underline"))
        parts.append(_bullets("•", decision.reasons, ""))
    if decision.warnings:
        parts.append(Text("warnings", style="bold yellow underline"))
        parts.append(_bullets("!", decision.warnings, "yellow"))
    parts.append(Text("dosing recommends; a person decides.", style="dim italic"))
    title = f"{decision.protocol} {decision.protocol_version} · {decision.date}"
    if decision.patient_id:
        title = f"{decision.patient_id} · {title}"
    return Panel(Group(*parts), title=Text(title), title_align="left", expand=False)


def dose_text(spec: DoseSpec) -> str:
    if spec.amount is not None:
        return f"{spec.drug} {format_number(spec.amount)} mg {spec.frequency}"
    if spec.level_from is not None:
        return f"{spec.drug} {spec.level_from} mg {spec.frequency}"
    assert spec.per_m2 is not None
    rounding = f", {spec.rounding} {format_number(spec.round_to)} mg" if spec.round_to else ""
    return f"{spec.drug} {format_number(spec.per_m2)} mg/m² {spec.frequency}{rounding}"


def protocol_tables(protocol: Protocol) -> Group:
    """States, transitions (as a tree, to read in any terminal width), inputs, site
    parameters, and the sources the rules cite."""
    from rich.tree import Tree

    header = Text.assemble(
        (protocol.title, "bold"), f"\n{protocol.id} {protocol.version} · drug {protocol.drug}"
    )
    if protocol.max_daily_dose is not None:
        header.append(f" · at most {format_number(protocol.max_daily_dose)} mg/day")
    states = Table(title="States", title_justify="left")
    states.add_column("state", no_wrap=True)
    states.add_column("dose")
    states.add_column("when no rule fires")
    states.add_column("recheck (days)")
    for state in protocol.states.values():
        marks = " (initial)" if state.initial else " (final)" if state.final else ""
        recheck = ", ".join(format_number(m.every_days, 1) for m in state.monitoring) or "-"
        doses = "\n".join(dose_text(d) for d in state.doses) or "none"
        states.add_row(
            *map(Text, (state.name + marks, doses, state.stay or "refer (must decide)", recheck))
        )
    rules = Tree(Text("Transitions (higher priority first)", style="bold"))
    for state in protocol.states.values():
        branch = rules.add(Text.assemble((state.name, "bold"), ("  " + state.source, "dim")))
        for t in sorted(state.transitions, key=lambda t: -t.priority):
            line = Text.assemble(
                (f"[{t.priority}] ", "dim"),
                (t.rule, "bold"),
                f": {t.when_text} -> {t.target} ",
                (f"({t.action})", _ACTION_STYLE.get(t.action, "")),
            )
            branch.add(line).add(Text(t.source, style="dim"))
    inputs = Table(title="Inputs", title_justify="left")
    for column in ("name", "unit", "plausible", "max age", "ULN default"):
        inputs.add_column(column)
    for lab in protocol.labs.values():
        uln = f"{format_number(lab.uln_default)} {lab.unit}" if lab.uln_default is not None else "-"
        plausible = f"{format_number(lab.low)}-{format_number(lab.high)}"
        inputs.add_row(*map(Text, (lab.name, lab.unit, plausible, f"{lab.max_age_days} d", uln)))
    for name in (*protocol.facts, *protocol.assessments):
        kind = protocol.scope[name]
        unit = (
            kind.unit if isinstance(kind, QuantityType) else "/".join(getattr(kind, "values", ()))
        )
        inputs.add_row(Text(name), Text(unit), "", "", "")
    parameters = Table(title="Site parameters (the sources are silent)", title_justify="left")
    parameters.add_column("name", no_wrap=True)
    parameters.add_column("value", no_wrap=True)
    parameters.add_column("note")
    for parameter in protocol.parameters.values():
        parameters.add_row(*map(Text, (parameter.name, parameter.value, parameter.note)))
    sources = Table(title="Sources (every rule cites one)", title_justify="left")
    sources.add_column("id", no_wrap=True)
    sources.add_column("kind", no_wrap=True)
    sources.add_column("public record, and where to look")
    for source in protocol.sources.values():
        sources.add_row(Text(source.id), Text(source.kind), Text(f"{source.ref}\n{source.cite}"))
    return Group(header, states, rules, inputs, parameters, sources)
