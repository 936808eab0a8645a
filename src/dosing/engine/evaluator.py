"""How a step evaluates guards and puts findings into words: the seam between the engine and
its evaluators.

`REFERENCE` is the engine's reference: the plain functions of `guards` and `explain`, exact
on Fractions, nothing remembered. A faster evaluator (`compiled.CompiledEvaluator`, used by
replay) answers the same questions from tables built once per protocol; a differential test
holds it to the reference, decision record for decision record, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from dosing.engine import explain
from dosing.protocol.guards import Finding, Guard, NameType, Outcome, Value, evaluate


class Evaluator(Protocol):
    """What a step asks of an evaluator."""

    def evaluate(self, guard: Guard, values: Mapping[str, Value | None]) -> Outcome:
        """Three-valued evaluation of `guard` (as `guards.evaluate`)."""
        ...

    def describe(
        self,
        finding: Finding,
        scope: Mapping[str, NameType],
        entered: Mapping[str, str],
        defaults_used: frozenset[str],
    ) -> str:
        """A finding in words (as `explain.describe`)."""
        ...

    def nearest(self, findings: Iterable[Finding]) -> list[Finding]:
        """One finding per subject and direction (as `explain.nearest`)."""
        ...

    def compact(self, finding: Finding, scope: Mapping[str, NameType]) -> str:
        """A finding as a short fact (as `explain.compact`)."""
        ...


class Reference:
    """The reference evaluator: the plain functions, computed afresh every time."""

    def evaluate(self, guard: Guard, values: Mapping[str, Value | None]) -> Outcome:
        return evaluate(guard, values)

    def describe(
        self,
        finding: Finding,
        scope: Mapping[str, NameType],
        entered: Mapping[str, str],
        defaults_used: frozenset[str],
    ) -> str:
        return explain.describe(finding, scope, entered, defaults_used)

    def nearest(self, findings: Iterable[Finding]) -> list[Finding]:
        return explain.nearest(findings)

    def compact(self, finding: Finding, scope: Mapping[str, NameType]) -> str:
        return explain.compact(finding, scope)


REFERENCE: Evaluator = Reference()
