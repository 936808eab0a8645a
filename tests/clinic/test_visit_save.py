"""A visit the store refuses after everything was typed: the cause is named, nothing typed is
lost (retry, or keep it and load it next time). The store is made read-only under the running
conversation, as a remount or a chmod would (SQLite's query_only gives the same error)."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from rich.console import Console

from dosing.clinic.store import Store
from dosing.clinic.visit import run_visit
from dosing.clinic.visit_save import VisitNotSaved
from dosing.protocol import catalog

NEW = ["imatinib-hes", "1975-06-01", "F", "70 kg", "170 cm"]
FIRST_LABS = ["1.2 mg/dL", "1.2 x10^9/L", "180 x10^9/L", "30 U/L", "28 U/L", "0.7 mg/dL", "yes"]
HOLD_LABS = ["0.8 x10^9/L", "", "", "", ""]


def conversation(
    store: Store, answers: list[str], when: Mapping[str, Callable[[], object]] | None = None
) -> tuple[Callable[..., object], io.StringIO]:
    """run_visit with answers given in order (Enter takes a shown default); `when` runs a
    hook just before the question containing its key is answered."""
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    remaining = list(answers)

    def ask(question: str, default: str | None) -> str:
        for key, hook in (when or {}).items():
            if key in question:
                hook()
        if not remaining:
            raise EOFError
        answer = remaining.pop(0)
        return default if answer == "" and default is not None else answer

    def run(patient: str, protocol: str | None, date: dt.date) -> object:
        return run_visit(
            store, catalog.load, patient, protocol, date, console, ask, clinician="dr-test"
        )

    return run, out


def first_visit(store: Store) -> None:
    run, _ = conversation(store, [*NEW[1:], *FIRST_LABS, "accept"])
    run("P01", "imatinib-hes", dt.date(2026, 1, 5))


def kept_files() -> list[Path]:
    folder = Path(os.environ["XDG_DATA_HOME"]) / "dosing" / "unsaved-visits"
    return sorted(folder.glob("*.json")) if folder.exists() else []


@pytest.fixture(autouse=True)
def nothing_kept_before() -> None:
    for path in kept_files():
        path.unlink()


def test_read_only_after_the_labs_then_fixed_retry_saves(tmp_path: Path) -> None:
    """Issue 10 (was: internal error (OperationalError), the visit lost): the cause is named,
    and Enter after fixing it saves the visit as typed."""
    with Store(tmp_path / "p.sqlite") as store:
        first_visit(store)
        read_only = {"answer": lambda: store.connection.execute("PRAGMA query_only = 1")}
        writable = {"try again": lambda: store.connection.execute("PRAGMA query_only = 0")}
        run, out = conversation(store, [*HOLD_LABS, "accept", ""], {**read_only, **writable})
        run("P01", None, dt.date(2026, 1, 12))
        assert len(store.visits("P01")) == 2
    text = out.getvalue()
    assert (
        f"The visit was not saved: {tmp_path / 'p.sqlite'} is read-only (attempt to write a "
        "readonly database)"
    ) in text
    assert "Saved visit 2 for P01" in text
    assert kept_files() == []


def test_read_only_after_the_labs_kept_then_loaded_next_time(tmp_path: Path) -> None:
    """'keep' writes what was typed to a private file; the next visit of P01 offers it, and
    loading it gives the same decision without typing the labs again."""
    db = tmp_path / "p.sqlite"
    with Store(db) as store:
        first_visit(store)
        read_only = {"answer": lambda: store.connection.execute("PRAGMA query_only = 1")}
        run, out = conversation(store, [*HOLD_LABS, "accept", "keep"], read_only)
        with pytest.raises(VisitNotSaved) as refused:
            run("P01", None, dt.date(2026, 1, 12))
        (kept,) = kept_files()
        assert str(refused.value) == (
            f"the visit was not saved: {db} is read-only (attempt to write a readonly "
            f"database). What was typed is kept in {kept}; dosing visit P01 offers to load it"
        )
        assert kept.stat().st_mode & 0o777 == 0o600
        assert len(store.visits("P01")) == 1
    with Store(db) as store:
        run, out = conversation(store, ["load", "accept"])
        run("P01", None, dt.date(2026, 1, 19))  # the date typed before is used
        (_first, second) = store.visits("P01")
    text = " ".join(out.getvalue().split())
    assert re.search(r"A visit of P01 for 2026-01-12 was typed at \S+ but not saved \(", text)
    assert "ANC (x10^9/L): 0.8 x10^9/L (loaded)" in text
    assert "Answered before: accepted" in text
    assert (second.date, second.decision["action"]) == (dt.date(2026, 1, 12), "hold")
    assert [o.entered for o in second.observations if o.name == "anc"] == ["0.8 x10^9/L"]
    assert kept_files() == []


def test_kept_visit_can_be_left_for_later_or_discarded(tmp_path: Path) -> None:
    """'later' keeps the file for another time; 'discard' removes it."""
    db = tmp_path / "p.sqlite"
    with Store(db) as store:
        first_visit(store)
        read_only = {"answer": lambda: store.connection.execute("PRAGMA query_only = 1")}
        run, _ = conversation(store, [*HOLD_LABS, "accept", "keep"], read_only)
        with pytest.raises(VisitNotSaved):
            run("P01", None, dt.date(2026, 1, 12))
    with Store(db) as store:
        run, _ = conversation(store, ["later"])
        with pytest.raises(Exception, match="nothing was stored"):
            run("P01", None, dt.date(2026, 1, 12))
        assert len(kept_files()) == 1
        run, _ = conversation(store, ["discard"])
        with pytest.raises(Exception, match="nothing was stored"):
            run("P01", None, dt.date(2026, 1, 12))
        assert kept_files() == []


def test_visit_without_an_id_mentions_what_is_waiting(tmp_path: Path) -> None:
    """dosing visit without a patient id lists the unsaved visits kept for this store."""
    db = tmp_path / "p.sqlite"
    with Store(db) as store:
        first_visit(store)
        read_only = {"answer": lambda: store.connection.execute("PRAGMA query_only = 1")}
        run, _ = conversation(store, [*HOLD_LABS, "accept", "keep"], read_only)
        with pytest.raises(VisitNotSaved):
            run("P01", None, dt.date(2026, 1, 12))
    with Store(db) as store:
        out = io.StringIO()
        console = Console(file=out, width=200, color_system=None)

        def ask(question: str, default: str | None) -> str:
            raise EOFError

        with pytest.raises(Exception, match="nothing was stored"):
            run_visit(
                store,
                catalog.load,
                None,
                None,
                dt.date(2026, 1, 12),
                console,
                ask,
                clinician="dr-test",
            )
    assert "Typed but not saved: P01 (2026-01-12). Give its id to load it." in out.getvalue()
