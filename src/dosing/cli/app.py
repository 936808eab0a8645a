"""The `dosing` command: a thin typer layer over the pure core.

Errors from the core are `DosingError`s; they are printed as one line on stderr with exit
code 2. Any other exception prints its type only (never locals or values, which could be
patient data) and exits 70.

The commands live in modules by way of working (protocols, step, replay, verify, clinic,
serve); this module holds the app, lists them in the order of `dosing --help`, and is the
entry point.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import Annotated, NoReturn

import typer

from dosing.cli import clinic, protocols, replay, serve, step, verify
from dosing.core.errors import Cancelled, DosingError

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
    help="Dose-adjustment decision support: protocols as state machines over exact lab units. "
    "[bold]dosing recommends; a person decides.[/]",
)


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


# The order of `dosing --help`.
app.command()(protocols.protocols)
app.command()(protocols.show)
app.command()(step.step)
app.command()(replay.replay)
app.command()(verify.check)
app.command()(replay.diff)
app.command()(protocols.schema)
app.command()(clinic.visit)
app.command()(clinic.amend)
app.command()(clinic.void)
app.command()(clinic.patients)
app.command()(clinic.history)
app.command("import-timeline")(replay.import_timeline)
app.command()(serve.serve)


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
