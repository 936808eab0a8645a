"""When a patient is next due: the next check, or after a referral the site's interval."""

from __future__ import annotations

import datetime as dt

import pytest

from dosing.clinic.due import next_due, overdue_days

DAY = dt.date(2026, 3, 2)


@pytest.mark.parametrize(
    ("next_check", "action", "refer_due", "due"),
    [
        (dt.date(2026, 3, 16), "continue", 1, dt.date(2026, 3, 16)),
        (None, "refer", 1, dt.date(2026, 3, 3)),
        (None, "refer", 7, dt.date(2026, 3, 9)),
        (None, "refer", 0, DAY),
        (None, "discontinue", 1, None),
        (None, "ineligible", 1, None),
    ],
)
def test_next_due(
    next_check: dt.date | None, action: str, refer_due: int, due: dt.date | None
) -> None:
    """A referral is due `refer_due` days after the visit; a final stop is never due."""
    assert next_due(next_check, action, DAY, refer_due) == due


def test_overdue_days() -> None:
    assert [overdue_days(DAY, DAY + dt.timedelta(days=n)) for n in (-1, 0, 1, 5)] == [0, 0, 1, 5]
    assert overdue_days(None, DAY) == 0
