"""Every protocol's scenarios pass, in every equivalent unit, and probe every threshold."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import pytest

from dosing.core.errors import ObservationError
from dosing.core.units import split_value
from dosing.engine.observations import read_observation
from dosing.protocol.guards import Comparison, comparisons_in
from dosing.protocol.model import Protocol, Scenario
from dosing.verify.scenarios import SCENARIO_START, VisitResult, run_scenario
from tests.conftest import PROTOCOL_FILES, load_file

PROTOCOLS = {path.stem: load_file(path) for path in PROTOCOL_FILES}
CASES = [(pid, scenario) for pid, protocol in PROTOCOLS.items() for scenario in protocol.scenarios]


def _id(case: object) -> str:
    return case.name if isinstance(case, Scenario) else str(case)


@pytest.mark.parametrize(("protocol_id", "scenario"), CASES, ids=_id)
def test_scenario(protocol_id: str, scenario: Scenario) -> None:
    """Each visit gives the state, action, dose, reasons and next check the file expects."""
    failures = [
        f"visit on day {result.visit.day}: {failure}"
        for result in run_scenario(PROTOCOLS[protocol_id], scenario)
        for failure in result.failures
    ]
    assert not failures, "\n".join(failures)


def exact_decimal(value: Fraction, places: int = 6) -> str | None:
    """The value as a decimal a person could type, if it has one with few places."""
    scaled = value * 10**places
    if scaled.denominator != 1:
        return None
    text = f"{scaled.numerator / 10**places:.{places}f}".rstrip("0").rstrip(".")
    return text if Fraction(text) == value else None


def equivalent_spellings(protocol: Protocol, scenario: Scenario) -> dict[str, list[str]]:
    """For each value typed in the scenario, the same value typed in every other known unit."""
    alternatives: dict[str, list[str]] = {}
    for visit in scenario.visits:
        for typed_as, (text, _) in visit.observations.items():
            if typed_as not in protocol.readings or text in alternatives:
                continue
            # The name the value is read as: a unit of the other measure reads as the twin
            # (triglycerides in mmol/L are triglycerides_molar).
            name = read_observation(protocol, typed_as, text, SCENARIO_START).name
            reading = protocol.readings[name]
            number, spelled = split_value(text)
            canonical = reading.spellings[spelled or reading.bare_unit or ""].apply(number)
            found = []
            for spelling, conversion in reading.spellings.items():
                typed = exact_decimal(conversion.invert(canonical))
                if (
                    spelling != spelled
                    and typed is not None
                    and _reads(protocol, typed_as, typed, spelling)
                ):
                    found.append(f"{typed} {spelling}")
            alternatives[text] = found
    return alternatives


def _reads(protocol: Protocol, name: str, number: str, spelling: str) -> bool:
    """Whether the value in that unit is one the reader accepts (787.5/mm3 is not: a count
    per mm3 has no decimals, it is refused as a likely thousands separator)."""
    try:
        read_observation(protocol, name, f"{number} {spelling}", SCENARIO_START)
    except ObservationError:
        return False
    return True


def respellings(protocol: Protocol, scenario: Scenario) -> Iterator[dict[str, str]]:
    alternatives = equivalent_spellings(protocol, scenario)
    for index in range(max((len(v) for v in alternatives.values()), default=0)):
        yield {
            text: options[index % len(options)] for text, options in alternatives.items() if options
        }


def outcome(results: list[VisitResult]) -> list[tuple[object, ...]]:
    """What a unit must not change: state, action, doses and the next check."""
    return [
        (
            r.decision.state,
            r.decision.action,
            tuple(map(str, r.decision.doses)),
            r.decision.next_check,
        )
        for r in results
    ]


@pytest.mark.parametrize(("protocol_id", "scenario"), CASES, ids=_id)
def test_scenario_in_every_equivalent_unit(protocol_id: str, scenario: Scenario) -> None:
    """Re-typed in other units (/mm3, K/uL, G/L, mg/L, umol/L ...), every decision is the same."""
    protocol = PROTOCOLS[protocol_id]
    expected = outcome(run_scenario(protocol, scenario))
    for respell in respellings(protocol, scenario):
        assert outcome(run_scenario(protocol, scenario, respell)) == expected, respell


@pytest.mark.parametrize(("protocol_id", "scenario"), CASES, ids=_id)
def test_every_typed_value_has_an_equivalent_spelling(protocol_id: str, scenario: Scenario) -> None:
    """The unit check is real: each value is also typed in at least one other unit."""
    alternatives = equivalent_spellings(PROTOCOLS[protocol_id], scenario)
    assert alternatives
    assert not [text for text, options in alternatives.items() if not options]


def test_known_respellings() -> None:
    """1200/mm3 is re-typed as 1.2 K/uL, and 0.6 mg/dL as 6 mg/L."""
    protocol = PROTOCOLS["imatinib-hes"]
    found = equivalent_spellings(protocol, protocol.scenarios[0])
    assert "1.2 K/uL" in found["1200/mm3"]
    assert "6 mg/L" in found["0.6 mg/dL"]


def _probes(protocol: Protocol) -> dict[tuple[str, str], list[Fraction]]:
    """Per (state, atom text): the values each scenario visit in that state offered the atom."""
    seen: dict[tuple[str, str], list[Fraction]] = {}
    atoms = {
        name: [
            a
            for t in state.transitions
            for a in comparisons_in(t.when)
            if isinstance(a, Comparison)
        ]
        for name, state in protocol.states.items()
    }
    for scenario in protocol.scenarios:
        for result in run_scenario(protocol, scenario):
            values: dict[str, Fraction | str] = {o.name: o.value for o in result.observations}
            for lab in protocol.labs.values():
                if lab.uln_default is not None:
                    values.setdefault(f"{lab.name}_uln", lab.uln_default)
            values.update(protocol.constants)
            for atom in atoms[result.origin]:
                value = values.get(atom.subject)
                if not isinstance(value, Fraction) or atom.subject not in protocol.readings:
                    continue
                if atom.reference is not None:
                    reference = values.get(atom.reference)
                    if not isinstance(reference, Fraction):
                        continue
                    value = value / reference
                seen.setdefault((result.origin, atom.text), []).append(value)
    return seen


@pytest.mark.parametrize("protocol_id", list(PROTOCOLS))
def test_every_threshold_is_probed_below_on_and_above(protocol_id: str) -> None:
    """For each rule's threshold in each state, scenarios try a value just below, on and above."""
    protocol = PROTOCOLS[protocol_id]
    probes = _probes(protocol)
    missing = []
    for name, state in protocol.states.items():
        for transition in state.transitions:
            for atom in comparisons_in(transition.when):
                if not isinstance(atom, Comparison) or atom.subject not in protocol.readings:
                    continue
                values = probes.get((name, atom.text), [])
                edge = atom.factor
                near = edge / 10
                sides = {
                    "below": any(edge - near <= v < edge for v in values),
                    "on": edge in values,
                    "above": any(edge < v <= edge + near for v in values),
                }
                lacking = [side for side, ok in sides.items() if not ok]
                if lacking:
                    missing.append(f"{name}: '{atom.text}' not probed {', '.join(lacking)}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("protocol_id", list(PROTOCOLS))
def test_every_transition_is_exercised(protocol_id: str) -> None:
    """Every rule fires in at least one scenario visit."""
    protocol = PROTOCOLS[protocol_id]
    fired = {
        rule.id
        for scenario in protocol.scenarios
        for result in run_scenario(protocol, scenario)
        for rule in result.decision.rules
    }
    unexercised = [
        f"{state.name}: {t.rule}"
        for state in protocol.states.values()
        for t in state.transitions
        if t.rule not in fired
    ]
    assert not unexercised, unexercised
