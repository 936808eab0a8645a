"""One PNG per patient: dose over time, the labs that drive it, their thresholds, and holds.

matplotlib is an optional extra (`pip install 'dosing[plot]'`); it is imported only here.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

from dosing.decision import daily_amount
from dosing.errors import DosingError
from dosing.guards import Comparison, comparisons_in
from dosing.model import Protocol
from dosing.replay import PatientReplay

_HOLDING = frozenset({"hold", "refer", "discontinue", "ineligible"})


def driving_labs(protocol: Protocol) -> dict[str, list[float]]:
    """The labs compared with a fixed threshold somewhere in the protocol, and those thresholds."""
    thresholds: dict[str, set[float]] = defaultdict(set)
    for state in protocol.states.values():
        for transition in state.transitions:
            for atom in comparisons_in(transition.when):
                if (
                    isinstance(atom, Comparison)
                    and atom.reference is None
                    and atom.subject in protocol.labs
                ):
                    thresholds[atom.subject].add(float(atom.factor))
    return {name: sorted(values) for name, values in thresholds.items()}


def _day(date: dt.date) -> float:
    """matplotlib's date number for a date (days since 1970-01-01)."""
    return float(date.toordinal() - dt.date(1970, 1, 1).toordinal())


def plot_patient(protocol: Protocol, patient: PatientReplay, folder: Path) -> Path:
    """Write `folder/PATIENT.png` and return its path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise DosingError("plots need matplotlib: pip install 'dosing[plot]'") from None
    figure, dose_axis = plt.subplots(figsize=(9, 4.5), dpi=100)
    dates = [decision.date for decision in patient.decisions]
    daily = [float(daily_amount(decision.doses, protocol.drug)) for decision in patient.decisions]
    if dates:
        days = [_day(date) for date in [*dates, dates[-1] + dt.timedelta(days=7)]]
        dose_axis.step(days, [*daily, daily[-1]], where="post", color="black", linewidth=2,
                       label=f"{protocol.drug} (mg/day)")  # fmt: skip
        for decision, begin, finish in zip(patient.decisions, days, days[1:], strict=False):
            if decision.action in _HOLDING or not decision.doses:
                dose_axis.axvspan(begin, finish, color="tab:red", alpha=0.12, linewidth=0)
    dose_axis.set_ylabel(f"{protocol.drug} mg/day")
    dose_axis.set_ylim(bottom=0)
    lab_axis = dose_axis.twinx()
    labs = driving_labs(protocol)
    colors = ["tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown"]
    series: dict[str, list[tuple[dt.date, float]]] = defaultdict(list)
    for date, name, value in patient.values:
        if name in labs:
            series[name].append((date, float(value)))
    for color, (name, points) in zip(colors, sorted(series.items()), strict=False):
        unit = protocol.labs[name].unit
        lab_axis.plot([_day(p[0]) for p in points], [p[1] for p in points], marker="o", color=color,
                      linewidth=1, label=f"{protocol.labs[name].label} ({unit})")  # fmt: skip
        for threshold in labs[name]:
            lab_axis.axhspan(
                threshold * 0.98, threshold * 1.02, color=color, alpha=0.18, linewidth=0
            )
            place = ("axes fraction", "data")
            lab_axis.annotate(f"{threshold:g}", (1.0, threshold), xycoords=place,
                              fontsize=7, color=color, va="center")  # fmt: skip
    if series:
        lab_axis.set_yscale("log")
        lab_axis.set_ylabel("labs (log scale); bands: thresholds")
    handles = [*dose_axis.get_legend_handles_labels()[0], *lab_axis.get_legend_handles_labels()[0]]
    names = [*dose_axis.get_legend_handles_labels()[1], *lab_axis.get_legend_handles_labels()[1]]
    dose_axis.legend(
        handles, names, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, fontsize=8, frameon=False
    )
    dose_axis.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
    figure.autofmt_xdate()
    figure.suptitle(
        f"{patient.patient_id} · {protocol.id} · shaded: no dose given (hold, refer, stop)"
    )
    figure.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in patient.patient_id)
    path = folder / f"{safe}.png"
    figure.savefig(path)
    plt.close(figure)
    return path
