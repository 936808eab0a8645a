"""The protocol commands: list the shipped protocols, show or draw one, print the schema of
protocol files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from dosing.cli.options import ProtocolArgument
from dosing.core.errors import ObservationError
from dosing.protocol import catalog


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


def show(
    protocol: ProtocolArgument,
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


def schema() -> None:
    """Print the JSON Schema of protocol files, for editors to validate and complete them.

    Example: [cyan]dosing schema > protocol.schema.json[/]
    """
    from dosing.protocol.schema import protocol_schema

    sys.stdout.write(json.dumps(protocol_schema(), indent=2) + "\n")
