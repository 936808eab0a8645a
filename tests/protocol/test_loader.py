"""Protocol files: every shipped one loads; each broken one fails with its exact message."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path

import pytest

from dosing.core.errors import ProtocolError
from dosing.protocol.loader import load_protocol
from dosing.protocol.model import Protocol
from tests.conftest import PROTOCOL_FILES, ROOT, load_file, time_limit

INVALID = sorted((Path(__file__).parent / "invalid_protocols").glob("*.yaml"))
BROKEN = [path for path in INVALID if not path.name.startswith("valid")]


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_protocol_gives_its_message(path: Path) -> None:
    """The first line of each broken file says the exact message loading must give."""
    text = path.read_text(encoding="utf-8")
    expected = text.splitlines()[0].removeprefix("# expect: ")
    with time_limit(20), pytest.raises(ProtocolError) as caught:
        load_protocol(text, path.name)
    assert str(caught.value) == expected


def test_the_valid_base_of_the_broken_files_loads() -> None:
    """The broken files differ from a valid one by one edit each."""
    protocol = load_file(Path(__file__).parent / "invalid_protocols" / "valid_tiny.yaml")
    assert list(protocol.states) == ["screening", "dose_400", "dose_300"]


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda p: p.stem)
def test_shipped_protocol_loads(path: Path) -> None:
    """Every shipped protocol loads, and its id is its file name."""
    assert load_file(path).id == path.stem


def citations(protocol: Protocol) -> list[str]:
    """Every citation in a protocol: states, transitions (and what they wait for),
    monitoring, ladders, invariants, assessments carried forward."""
    cited = [ladder.source for ladder in protocol.ladders.values()]
    cited += [invariant.source for invariant in protocol.invariants]
    cited += [kept.source for kept in protocol.carried_forward.values()]
    for state in protocol.states.values():
        cited += [state.source, *(t.source for t in state.transitions)]
        cited += [t.waits.source for t in state.transitions if t.waits is not None]
        cited += [m.source for m in state.monitoring]
    return cited


_CITED = re.compile(r"(?:^|;\s*)([A-Za-z0-9_-]+)(?::|$)")


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda p: p.stem)
def test_every_rule_cites_a_declared_source(path: Path) -> None:
    """Issue 15: every source a citation names ('NCT00044304: Study Groups; label-imatinib:
    Table 1') is declared in the file; two rules once cited an undeclared 'facts:'."""
    protocol = load_file(path)
    for citation in citations(protocol):
        named = _CITED.findall(citation)
        assert named, citation
        assert set(named) <= set(protocol.sources), (citation, set(named) - set(protocol.sources))


_JOURNAL = re.compile(r"\b(19|20)\d\d;\d+(\(\d+\))?:\d+")


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda p: p.stem)
def test_every_source_has_a_public_reference(path: Path) -> None:
    """Issue 15: a user's clone has no shared/seeds/ or clinical-facts.md, so each source names
    what anyone can open: a trial its NCT id and registry address, a paper its DOI or journal
    citation, a label its sections."""
    protocol = load_file(path)
    for source in protocol.sources.values():
        both = f"{source.ref} {source.cite}"
        assert "shared/" not in both, source
        assert "seed" not in both, source
        if source.kind == "trial":
            nct = re.search(r"NCT\d{8}", source.ref)
            assert nct, source
            assert f"https://clinicaltrials.gov/study/{nct[0]}" in source.cite, source
            assert source.id == nct[0], source  # cited as the registry names it
        elif source.kind == "paper":
            assert "doi:10." in source.cite or _JOURNAL.search(source.cite), source
        elif source.kind == "label":
            assert "prescribing information" in source.ref, source
            assert source.cite.strip(), source
        else:
            assert source.kind == "site", source
            assert source.cite == "this file, parameters", source


def test_no_shipped_text_points_at_files_a_clone_lacks() -> None:
    """No protocol file, README or example names the seed files or the shared folder."""
    for path in [*PROTOCOL_FILES, ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"seed-\d|shared/seeds|clinical-facts\.md", text), path


def test_yes_and_no_stay_answers_not_booleans() -> None:
    """YAML 1.1 would read `no` as false; protocol files keep it as the answer 'no'."""
    protocol = load_file(ROOT / "protocols" / "imatinib-hes.yaml")
    observations = protocol.scenarios[0].visits[0].observations
    assert observations["bleeding"] == ("no", 0)


def test_sha256_identifies_the_text() -> None:
    """The decision record's protocol_sha256 is the sha256 of the file's text."""
    import hashlib

    path = ROOT / "protocols" / "imatinib-hes.yaml"
    text = path.read_text(encoding="utf-8")
    assert load_file(path).sha256 == hashlib.sha256(text.encode()).hexdigest()


def test_a_guard_with_a_leading_zero_exponent_reads_ten_to_the_ninth() -> None:
    """Issue 10 item 3: 'anc < 1.5 x10^09/L' loaded as anc < 1.5e-8, and ANC 1.2 got 400 mg."""
    import datetime as dt

    from dosing.engine.observations import read_observation
    from dosing.engine.patient import PatientRecord
    from dosing.engine.step import step
    from dosing.protocol.guards import Comparison

    text = (Path(__file__).parent / "invalid_protocols" / "valid_tiny.yaml").read_text()
    protocol = load_protocol(text.replace("x10^9/L", "x10^09/L"), "tiny.yaml")
    guards = [t.when for t in protocol.states["screening"].transitions]
    assert all(isinstance(g, Comparison) and g.factor == Fraction(3, 2) for g in guards)
    day = dt.date(2026, 1, 5)
    seen = [read_observation(protocol, "anc", "1.2 x10^09/L", day)]
    seen.append(read_observation(protocol, "age", "40", day))
    decision, _ = step(protocol, PatientRecord(), day, seen)
    assert (decision.state, [str(d) for d in decision.doses]) == (
        "dose_300",
        ["imatinib 300 mg qd"],
    )


def tiny() -> str:
    return (Path(__file__).parent / "invalid_protocols" / "valid_tiny.yaml").read_text()


def test_a_nul_byte_is_named_with_its_line_and_column() -> None:
    """Issue 10 item 14: a NUL byte in a protocol crashed the loader (exit 70)."""
    text = tiny().replace("drug: imatinib", "drug: ima\x00tinib")
    with pytest.raises(ProtocolError) as caught:
        load_protocol(text, "nul.yaml")
    assert str(caught.value) == (
        "nul.yaml:3: U+0000 NULL at column 10: a protocol file is text, without control characters"
    )


@pytest.mark.parametrize("depth", [60, 1000])
def test_deep_nesting_is_refused_before_the_yaml_library_recurses(depth: int) -> None:
    """Issue 10 item 14: 1,000 levels raised RecursionError; 50,000 crashed libyaml."""
    text = tiny() + "extra: " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(ProtocolError) as caught:
        load_protocol(text, "deep.yaml")
    assert str(caught.value) == (
        "deep.yaml:37: nested more than 50 levels deep; a protocol file needs a handful"
    )


def test_anchors_and_aliases_still_work() -> None:
    """Shipped protocols share monitoring and rules with &anchors and *aliases: still read."""
    path = ROOT / "protocols" / "imatinib-hes.yaml"
    assert "*monitoring" in path.read_text()
    assert "*hepatic_hold" in path.read_text()
    protocol = load_file(path)
    assert protocol.states["dose_300"].monitoring == protocol.states["dose_400"].monitoring


def test_a_file_over_a_megabyte_is_refused() -> None:
    """A protocol file is tens of kilobytes; a megabyte is not one (and would be slow)."""
    text = tiny() + "#" + "x" * 1_000_000 + "\n"
    with pytest.raises(ProtocolError) as caught:
        load_protocol(text, "big.yaml")
    assert str(caught.value) == ("big.yaml: 1000991 characters; a protocol file is at most 1000000")
