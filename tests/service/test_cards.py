"""CDS Hooks cards from decisions, pure: indicator by action, a summary under 140 characters,
Markdown that shows the reasons as written."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from typing import cast

import pytest

from dosing.engine.decision import Decision, DoseLine, RuleRef
from dosing.protocol import catalog
from dosing.protocol.model import ACTIONS, Action
from dosing.service.cards import INDICATORS, card, summary


def decision(action: str, reasons: tuple[str, ...] = ("why",)) -> Decision:
    doses = () if action in ("hold", "discontinue", "ineligible", "refer") else (
        DoseLine("imatinib", Fraction(300), "mg", "qd"),
    )  # fmt: skip
    return Decision(
        "P01", dt.date(2026, 1, 5), "imatinib-hes", "2026.11.2", "0" * 64, "dose_300",
        cast(Action, action), doses, dt.date(2026, 1, 12),
        (RuleRef("r1", "seed-000: Study Groups"),),
        reasons, (),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("action", "indicator"),
    [("continue", "info"), ("start", "info"), ("resume", "info"), ("decrease", "warning"),
     ("increase", "warning"), ("refer", "warning"), ("hold", "critical"),
     ("discontinue", "critical"), ("ineligible", "critical")],
)  # fmt: skip
def test_the_indicator_follows_the_action(action: str, indicator: str) -> None:
    """Issue 13: info for continue, warning for decrease or refer, critical for hold, stop or
    ineligible (start and resume info, an increase a warning)."""
    assert set(INDICATORS) == set(ACTIONS)
    protocol = catalog.load("imatinib-hes")
    assert card(decision(action), protocol, "c", "s")["indicator"] == indicator


def test_a_long_referral_is_summarised_under_140_characters() -> None:
    long = decision("refer", ("Cannot decide: " + "ANC, platelets, ALT, AST " * 20,))
    text = summary(long)
    assert len(text) < 140
    assert text.startswith("Refer, no dose: Cannot decide: ANC")
    assert text.endswith("…")


def test_markdown_characters_in_reasons_are_shown_as_written() -> None:
    protocol = catalog.load("imatinib-hes")
    written = card(decision("continue", ("ANC < 1.5 x10^9/L *not* [x]",)), protocol, "c", "s")
    assert "- ANC \\< 1.5 x10^9/L \\*not\\* \\[x\\]" in written["detail"]
    assert written["summary"] == "Continue: imatinib 300 mg qd; next check 2026-01-12"
