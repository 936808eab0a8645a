"""A patient's course as a clinician reads it: the dose on its own panel, a panel for each
lab (or group of labs) the rules read once treatment started, each threshold as a labelled
band in the lab's own unit, holds and stops shaded on every panel with the rule that began
them, and values used again at a later visit drawn hollow at their draw date.

matplotlib is an optional extra (`pip install 'dosing[plot]'`); it is imported only here.
What to draw (`plan`, `periods`) is worked out without it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from dosing.core.errors import DosingError
from dosing.engine.decision import Decision
from dosing.protocol.model import Protocol
from dosing.replay.course_panels import (
    Panel,
    Period,
    carried,
    merged_points,
    periods,
    plan,
)
from dosing.replay.replay import LabPoint

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# ---------------------------------------------------------------------------- what to draw


# ---------------------------------------------------------------------------- drawing


@attrs.frozen
class CoursePlot:
    """What was drawn: the panels from top to bottom, and the files written."""

    panels: tuple[str, ...]
    files: tuple[Path, ...]


Format = Literal["png", "svg", "pdf"]
_COLORS = ("tab:blue", "tab:green", "tab:orange", "tab:purple", "tab:brown", "tab:olive")
_SHADE = {"held": "tab:red", "stopped": "0.35", "not eligible": "0.35", "referred": "tab:purple"}
_WIDTH_IN = 10.0
_DPI = 100
_TABLE_LINES = 40
"""Lines of the decision table under the plot on a report's first page; the rest follow."""
_LINE_IN = 0.13


def plot_course(
    protocol: Protocol,
    patient_id: str,
    decisions: Sequence[Decision],
    points: Sequence[LabPoint],
    folder: Path,
    formats: Sequence[Format] = ("png", "svg"),
    table: str | None = None,
    stem: str | None = None,
) -> CoursePlot:
    """Draw one patient's course and write it in each format into `folder` (PATIENT.png,
    .svg; .pdf is a report: the plot, then `table` under it). Returns what was drawn."""
    plt, mdates = _matplotlib()
    panels = plan(protocol)

    def draw(lines: list[str]) -> tuple[Figure, tuple[str, ...]]:
        if not any(decision.doses for decision in decisions):
            return _message_figure(plt, protocol, patient_id, decisions, lines), ("message",)
        return _course_figure(plt, mdates, protocol, patient_id, decisions, points, panels, lines)

    folder.mkdir(parents=True, exist_ok=True)
    name = stem or "".join(c if c.isalnum() or c in "-_." else "_" for c in patient_id)
    written = []
    titles: tuple[str, ...] = ()
    for kind in formats:
        path = folder / f"{name}.{kind}"
        lines = (table or "").rstrip("\n").splitlines() if kind == "pdf" else []
        figure, titles = draw(lines[:_TABLE_LINES])
        if kind == "pdf":
            _write_report(plt, figure, path, lines[_TABLE_LINES:])
        else:
            figure.savefig(path, format=kind, dpi=_DPI)
        plt.close(figure)
        written.append(path)
    return CoursePlot(titles, tuple(written))


def _matplotlib() -> tuple[Any, Any]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        matplotlib.rcParams["svg.hashsalt"] = "dosing"  # the same course draws the same SVG
        import matplotlib.dates as mdates
        import matplotlib.pyplot as plt
    except ImportError:
        raise DosingError("plots need matplotlib: pip install 'dosing[plot]'") from None
    return plt, mdates


def _message_figure(
    plt: Any,
    protocol: Protocol,
    patient_id: str,
    decisions: Sequence[Decision],
    table: list[str],
) -> Figure:
    """No dose was ever given: say what happened instead of drawing empty axes."""
    heights = [2.2] + ([_LINE_IN * (len(table) + 1)] if table else [])
    figure: Figure = plt.figure(figsize=(_WIDTH_IN, 0.4 + sum(heights)), dpi=_DPI)
    grid = figure.add_gridspec(len(heights), 1, height_ratios=heights)
    axes = figure.add_subplot(grid[0])
    if table:
        _table(figure.add_subplot(grid[1]), table)
    axes.set_axis_off()
    if decisions:
        lines = [
            f"{d.date}  {d.action}  {', '.join(r.id for r in d.rules) or '-'}" for d in decisions
        ]
        said = "No dose was given, so there is no course to draw:\n" + "\n".join(lines[:8])
    else:
        said = "No visit was decided, so there is no course to draw."
    axes.text(0.5, 0.5, said, ha="center", va="center", fontsize=11, transform=axes.transAxes)
    figure.suptitle(f"{patient_id} · {protocol.id}", fontsize=12)
    return figure


def _course_figure(
    plt: Any,
    mdates: Any,
    protocol: Protocol,
    patient_id: str,
    decisions: Sequence[Decision],
    points: Sequence[LabPoint],
    panels: list[Panel],
    table: list[str],
) -> tuple[Figure, tuple[str, ...]]:
    shown = merged_points(points)
    by_name: dict[str, list[LabPoint]] = defaultdict(list)
    for point in shown:
        by_name[point.name].append(point)
    again: dict[str, list[LabPoint]] = defaultdict(list)
    for point in carried(points):
        again[point.name].append(point)
    drawn = [panel for panel in panels if any(by_name.get(name) for name in panel.labs)]
    heights = [1.6] + [1.5] * len(drawn)
    below = [_LINE_IN * (len(table) + 1)] if table else []
    figure = plt.figure(figsize=(_WIDTH_IN, 1.3 + sum(heights) + sum(below)), dpi=_DPI)
    grid = figure.add_gridspec(len(heights) + len(below), 1, height_ratios=heights + below)
    axes: list[Axes] = []
    for row in range(len(heights)):
        axes.append(figure.add_subplot(grid[row], sharex=axes[0] if axes else None))
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    if table:
        _table(figure.add_subplot(grid[len(heights)]), table)
    shading = periods(decisions)
    end = max(
        [
            *(p.end for p in shading),
            decisions[-1].next_check or decisions[-1].date + dt.timedelta(days=7),
        ]
    )
    _dose_panel(axes[0], mdates, decisions, end)
    for ax, panel in zip(axes[1:], drawn, strict=True):
        _lab_panel(ax, mdates, protocol, panel, by_name, again)
    for index, ax in enumerate(axes):
        _shade(ax, mdates, shading, label=index == 0)
        ax.grid(axis="y", color="0.9", linewidth=0.6)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    start = decisions[0].date - dt.timedelta(days=2)
    axes[-1].set_xlim(mdates.date2num(start), mdates.date2num(end + dt.timedelta(days=2)))
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    dates = mdates.ConciseDateFormatter(locator, offset_formats=["", "%Y", "%Y", "%Y", "%Y", "%Y"])
    axes[-1].xaxis.set_major_locator(locator)
    axes[-1].xaxis.set_major_formatter(dates)
    figure.suptitle(f"{patient_id} · {protocol.id} {protocol.version}", fontsize=12, x=0.01,
                    ha="left")  # fmt: skip
    handles = _legend_handles(plt, shading)
    if handles:
        figure.legend(handles=handles, loc="upper right", ncol=len(handles), fontsize=8,
                      frameon=False)  # fmt: skip
    figure.text(0.99, 0.005, "dosing recommends; a person decides.", ha="right", va="bottom",
                fontsize=7, color="0.4")  # fmt: skip
    figure.tight_layout(rect=(0, 0.02, 1, 0.95))
    return figure, ("dose", *(panel.title for panel in drawn))


def _dose_panel(ax: Axes, mdates: Any, decisions: Sequence[Decision], end: dt.date) -> None:
    """One step line per drug, in mg per administration, each change labelled as given."""
    drugs = list(dict.fromkeys(dose.drug for d in decisions for dose in d.doses))
    days = [mdates.date2num(d.date) for d in decisions] + [mdates.date2num(end)]
    top = Fraction(0)
    for color, drug in zip(_COLORS, drugs, strict=False):
        amounts = []
        for decision in decisions:
            line = next((dose for dose in decision.doses if dose.drug == drug), None)
            # A refer advises no dose, nor none: the line breaks there (shaded 'referred').
            none = math.nan if decision.action == "refer" else 0.0
            amounts.append(float(line.amount) if line else none)
            top = max(top, line.amount if line else top)
        ax.step(days, [*amounts, amounts[-1]], where="post", color=color, linewidth=2,
                label=drug)  # fmt: skip
        said = None
        for decision, day in zip(decisions, days, strict=False):
            line = next((dose for dose in decision.doses if dose.drug == drug), None)
            text = line.short() if line else "none"
            # 'none' once a dose stops; with several drugs the shading says it for all.
            quiet = line is None and (said is None or len(drugs) > 1 or decision.action == "refer")
            if text != said and not quiet:
                y = float(line.amount) if line else 0.0
                stays = f"{decision.state}:{decision.action}"
                why = [rule.id for rule in decision.rules if rule.id != stays]
                shown = f"{text} · {why[0]}" if line and why and len(drugs) == 1 else text
                ax.annotate(shown, (day, y), xytext=(3, 3), textcoords="offset points",
                            fontsize=8, color=color)  # fmt: skip
            said = text
    if len(drugs) == 1:
        _given(ax, mdates, decisions, drugs[0])
    ax.set_ylim(0, float(top) * 1.45 if top else 1)
    ax.set_ylabel("dose (mg)", fontsize=9)
    ax.set_title("dose" + (f": {', '.join(drugs)}" if drugs else ""), loc="left", fontsize=10)
    if len(drugs) > 1:
        _legend(ax)


_GIVEN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*mg\b", re.IGNORECASE)


def _given(ax: Axes, mdates: Any, decisions: Sequence[Decision], drug: str) -> None:
    """A recorded dose that differs from the advice, as a cross where it was given."""
    xs, ys = [], []
    for decision in decisions:
        if decision.matches_given is not False or decision.dose_given is None:
            continue
        match = _GIVEN.match(decision.dose_given)
        given = float(match[1]) if match else 0.0  # 'held', 'none': nothing given
        xs.append(mdates.date2num(decision.date))
        ys.append(given)
    if xs:
        ax.plot(xs, ys, "x", color="black", markersize=7, mew=1.5,
                label=f"{drug} given, not as advised")  # fmt: skip
        _legend(ax)


def _lab_panel(
    ax: Axes,
    mdates: Any,
    protocol: Protocol,
    panel: Panel,
    by_name: dict[str, list[LabPoint]],
    again: dict[str, list[LabPoint]],
) -> None:
    top = max([float(t.value) for t in panel.thresholds] or [0.0])
    notes: set[str] = set()
    for color, name in zip(_COLORS, panel.labs, strict=False):
        series = by_name.get(name, [])
        if not series:
            continue
        ulns = {f"{name}@{p.drawn_on}": float(p.value) for p in by_name.get(f"{name}_uln", [])}
        scale = [
            _per_uln(protocol, name, point, ulns) if panel.per_uln else 1.0 for point in series
        ]
        xs = [mdates.date2num(point.drawn_on) for point in series]
        ys = [float(point.value) * factor for point, factor in zip(series, scale, strict=True)]
        top = max(top, *ys)
        label = _label(protocol, name)
        ax.plot(xs, ys, color=color, linewidth=1.2, label=label)
        filled = [(x, y) for x, y, p in zip(xs, ys, series, strict=True) if not p.reused]
        hollow = [(x, y) for x, y, p in zip(xs, ys, series, strict=True) if p.reused]
        if filled:
            ax.plot(*zip(*filled, strict=True), "o", color=color, markersize=5)
        if hollow:
            ax.plot(*zip(*hollow, strict=True), "o", markerfacecolor="white",
                    markeredgecolor=color, markersize=6)  # fmt: skip
            notes.add("hollow")
        for use in again.get(name, []):
            factor = _per_uln(protocol, name, use, ulns) if panel.per_uln else 1.0
            y = float(use.value) * factor
            assert use.used_on is not None
            ax.plot([mdates.date2num(use.drawn_on), mdates.date2num(use.used_on)], [y, y], ":",
                    color=color, linewidth=1.4)  # fmt: skip
            notes.add("dotted")
    ax.set_ylim(0, top * 1.25 if top else 1)
    _bands(ax, panel)
    ax.set_ylabel(panel.unit, fontsize=9)
    ax.set_title(panel.title, loc="left", fontsize=10)
    if len(panel.labs) > 1 or notes:
        _legend(ax, notes)


def _legend(ax: Axes, notes: frozenset[str] | set[str] = frozenset()) -> None:
    """On the panel's title line, at the right: never over the lines or their labels. A
    value used again at a later visit is dotted to it; one drawn before any visit, hollow."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    if "dotted" in notes:
        handles.append(Line2D([], [], linestyle=":", color="0.3"))
        labels.append("used again at a later visit")
    if "hollow" in notes:
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="white",
                              markeredgecolor="0.3"))  # fmt: skip
        labels.append("drawn before a visit")
    ax.legend(handles, labels, loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8,
              frameon=False, ncol=len(labels), borderaxespad=0.1)  # fmt: skip


def _per_uln(protocol: Protocol, name: str, point: LabPoint, ulns: dict[str, float]) -> float:
    """1 / the ULN: the patient's own from the same draw, else the protocol's default."""
    own = ulns.get(f"{name}@{point.drawn_on}")
    uln = own if own is not None else protocol.labs[name].uln_default
    return 1.0 / float(uln) if uln else 1.0


def _label(protocol: Protocol, name: str) -> str:
    lab = protocol.labs.get(name)
    if lab is not None:
        return lab.label
    kind = protocol.scope.get(name)
    return kind.label if kind is not None else name


def _bands(ax: Axes, panel: Panel) -> None:
    """Each threshold a thin band with its value and what the rules do there, written just
    above it inside the plot at the right (the ticks are at the left), never on another."""
    low, high = ax.get_ylim()
    room = (high - low) * 0.09
    placed: list[float] = []
    for threshold in panel.thresholds:
        y = float(threshold.value)
        if not low <= y <= high:
            continue
        ax.axhspan(y - room * 0.08, y + room * 0.08, color="tab:red", alpha=0.25, linewidth=0)
        text_y = y
        while any(abs(text_y - other) < room for other in placed):
            text_y += room
        placed.append(text_y)
        ax.text(0.995, text_y, threshold.label(panel.unit), transform=ax.get_yaxis_transform(),
                ha="right", va="bottom", fontsize=7, color="tab:red")  # fmt: skip


def _shade(ax: Axes, mdates: Any, shading: list[Period], label: bool) -> None:
    for period in shading:
        begin, finish = mdates.date2num(period.start), mdates.date2num(period.end)
        ax.axvspan(begin, finish, color=_SHADE[period.kind], alpha=0.12, linewidth=0)
    if label:
        _rule_labels(ax, mdates, shading)


def _rule_labels(ax: Axes, mdates: Any, shading: list[Period]) -> None:
    """The rule that began each shaded period, at its start along the top of the dose
    panel; a label that would run into the one before it goes a line lower."""
    low, high = ax.get_xlim()
    width_in = ax.get_position().width * _WIDTH_IN
    per_day = width_in / (high - low) if high > low else 1.0
    ends: list[float] = []  # where the last label on each line ends, in inches
    for period in shading:
        at = (mdates.date2num(period.start) - low) * per_day
        size = len(period.rule) * 7 * 0.55 / 72 + 0.1  # 7 pt, about 0.55 em a character
        line = next((i for i, end in enumerate(ends) if end < at), len(ends))
        if line == len(ends):
            ends.append(0.0)
        ends[line] = at + size
        ax.text(mdates.date2num(period.start), 0.97 - 0.11 * line, f" {period.rule}",
                transform=ax.get_xaxis_transform(), va="top", ha="left", fontsize=7,
                color="0.25")  # fmt: skip


def _legend_handles(plt: Any, shading: list[Period]) -> list[Any]:
    from matplotlib.patches import Patch

    kinds = list(dict.fromkeys(period.kind for period in shading))
    return [Patch(color=_SHADE[kind], alpha=0.25, label=kind) for kind in kinds]


def _table(ax: Axes, lines: list[str]) -> None:
    """The decision table under the plot, in a fixed-width font so its columns align."""
    ax.set_axis_off()
    ax.text(0.0, 1.0, "\n".join(lines), family="monospace", fontsize=7, va="top", ha="left",
            transform=ax.transAxes)  # fmt: skip


def _write_report(plt: Any, figure: Figure, path: Path, rest: list[str]) -> None:
    """A PDF: the plot with the decision table under it; a table too long for that page
    goes on, in the same font, on the pages after."""
    from matplotlib.backends.backend_pdf import PdfPages

    lines = rest
    per_page = 80
    with PdfPages(path) as pdf:
        pdf.savefig(figure)
        for start in range(0, len(lines), per_page):
            page = plt.figure(figsize=(8.27, 11.69))  # A4, portrait
            page.text(0.04, 0.97, "\n".join(lines[start : start + per_page]), family="monospace",
                      fontsize=6.5, va="top", ha="left")  # fmt: skip
            pdf.savefig(page)
            plt.close(page)
