"""When a patient is next due, so that nobody falls off the clinic's list.

A decision's next check says when; a referral has none (the clinician sets it), so the
patient is due again a set number of days after it: a site parameter (`--refer-due`, or
$DOSING_REFER_DUE_DAYS), by default the next day. A stop in a final state (off study, course
completed, not eligible) has no next check and no due date.
"""

from __future__ import annotations

import datetime as dt

REFER_DUE_DAYS = 1
"""Days after a referral that the patient is due again, unless the site sets another."""
REFER_DUE_VARIABLE = "DOSING_REFER_DUE_DAYS"


def next_due(
    next_check: dt.date | None,
    action: str | None,
    last_visit: dt.date | None,
    refer_due_days: int = REFER_DUE_DAYS,
) -> dt.date | None:
    """The decision's next check; after a referral, `refer_due_days` after the visit."""
    if next_check is not None:
        return next_check
    if action == "refer" and last_visit is not None:
        return last_visit + dt.timedelta(days=refer_due_days)
    return None


def overdue_days(due: dt.date | None, today: dt.date) -> int:
    """How many days past its due date a patient is (0: not overdue, or nothing due)."""
    return max(0, (today - due).days) if due is not None else 0
