"""What `dosing check` reports: a finding (its severity, the state and the rule, the message)
and the report of one protocol.
"""

from __future__ import annotations

from typing import Literal

import attrs

Severity = Literal["error", "warning", "note"]


@attrs.frozen
class Finding:
    """One result of a check: what, where, how serious."""

    check: str
    severity: Severity
    where: str
    message: str
    timeline: tuple[str, ...] = ()
    """For a broken property or invariant: the minimal timeline, one line per visit."""

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = attrs.asdict(self)
        record["timeline"] = list(self.timeline)
        return record


@attrs.frozen
class Report:
    """All findings for one protocol, and what was exercised."""

    protocol: str
    findings: tuple[Finding, ...]
    scenarios: int = 0
    transitions_exercised: int = 0
    transitions: int = 0
    boundary_cases: int = 0
    properties: int = 0
    """Declared properties searched on generated timelines."""
    invariants: int = 0
    """Label invariants searched on generated courses."""

    @property
    def errors(self) -> int:
        return sum(1 for finding in self.findings if finding.severity == "error")

    def to_json(self) -> dict[str, object]:
        return {
            "protocol": self.protocol,
            "errors": self.errors,
            "scenarios": self.scenarios,
            "transitions": self.transitions,
            "transitions_exercised": self.transitions_exercised,
            "boundary_cases": self.boundary_cases,
            "properties": self.properties,
            "invariants": self.invariants,
            "findings": [finding.to_json() for finding in self.findings],
        }
