"""What several commands share: their argument and option declarations, defined once, and the
readers of those values (NAME=VALUE pairs, dates, the clinician, the patient store)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dosing.core.errors import DosingError, ObservationError
from dosing.engine.patient import FIRST_DATE, LAST_DATE, PLACEHOLDER
from dosing.protocol import catalog

if TYPE_CHECKING:
    from dosing.clinic.store import Store


def protocol_ids(incomplete: str) -> list[str]:
    """Shell completion of a protocol argument: the shipped ids."""
    return [name for name in catalog.shipped_ids() if name.startswith(incomplete)]


ProtocolArgument = Annotated[
    str,
    typer.Argument(
        help="A shipped protocol id or a path to a .yaml file.", autocompletion=protocol_ids
    ),
]
PatientArgument = Annotated[str, typer.Argument(help="The patient's id.")]
AcceptImplausibleOption = Annotated[
    bool, typer.Option(help="Use a value outside its plausible range knowingly.")
]
"""--accept-implausible of the commands at the prompt (visit, amend)."""


def parse_pairs(items: list[str], option: str) -> list[tuple[str, str]]:
    """Each NAME=VALUE given to `option`, as (name, value)."""
    pairs = []
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name.strip() or not value.strip():
            raise ObservationError(
                f"{option} '{item}': expected NAME=VALUE, e.g. {option} anc=1.2x10^9/L"
            )
        pairs.append((name.strip(), value.strip()))
    return pairs


def parse_date(text: str, what: str) -> dt.date:
    """A date given as YYYY-MM-DD; `what` names it in the message when it is not one."""
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise ObservationError(f"{what} '{text}' is not a date; write YYYY-MM-DD") from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise ObservationError(f"{what} '{text}': {PLACEHOLDER}")
    return day


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


def open_store(db: Path | None, create: bool = True) -> Store:
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


def who_answers(option: str | None) -> str:
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
