"""The compile cache as an attacker meets it: edited, crafted, shared and linked entries never
change a decision or run code; the protocol is compiled from its text instead, with a warning."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import pytest

from dosing.protocol import model_json
from dosing.protocol.guards import Comparison
from dosing.protocol.model import Protocol
from tests.conftest import PROTOCOL_FILES, ROOT, load_file

STEP = [
    "step", "imatinib-hes", "--date", "2026-01-05", "--patient", "age=45", "--patient", "sex=F",
    "--lab", "anc=1200/mm3", "--lab", "platelets=180x10^9/L", "--lab", "alt=30U/L",
    "--lab", "ast=28U/L", "--lab", "bilirubin=0.7mg/dL", "--lab", "bleeding=no",
    "--lab", "eligibility_confirmed=yes", "--json",
]  # fmt: skip


def step(cache: Path) -> tuple[list[str], str]:
    """dosing step for an adult with ANC 1.2 x10^9/L: (the doses, stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "dosing", *STEP],
        capture_output=True,
        text=True,
        env={**os.environ, "DOSING_CACHE_DIR": str(cache)},
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    doses = [f"{d['amount']} {d['unit']} {d['frequency']}" for d in record["doses"]]
    return doses, result.stderr


def warm(cache: Path) -> Path:
    """Run once so the cache holds imatinib-hes; returns its one entry."""
    assert step(cache) == (["300 mg qd"], "")
    (entry,) = (path for path in cache.iterdir() if not path.name.startswith("."))
    return entry


def anc_thresholds_divided_by_ten(value: Any) -> Any:
    """The protocol with every ANC threshold divided by 10, as the attacker in issue 10 did."""
    if isinstance(value, Comparison) and value.subject == "anc":
        return attrs.evolve(value, factor=value.factor / 10)
    if attrs.has(type(value)):
        changes = {
            field.name: anc_thresholds_divided_by_ten(getattr(value, field.name))
            for field in attrs.fields(type(value))
        }
        return type(value)(**changes)
    if isinstance(value, tuple):
        return tuple(anc_thresholds_divided_by_ten(item) for item in value)
    if isinstance(value, dict):
        return {key: anc_thresholds_divided_by_ten(item) for key, item in value.items()}
    return value


@pytest.fixture(scope="module")
def genuine() -> Protocol:
    return load_file(ROOT / "protocols" / "imatinib-hes.yaml")


def test_edited_pickle_does_not_change_the_dose(tmp_path: Path, genuine: Protocol) -> None:
    """Issue 10: the cache entry replaced by a pickle of the protocol with the ANC thresholds
    divided by 10 (and the genuine sha256) is not used: ANC 1.2 still starts at 300 mg."""
    entry = warm(tmp_path)
    tampered = anc_thresholds_divided_by_ten(genuine)
    assert tampered.sha256 == genuine.sha256
    entry.write_bytes(pickle.dumps(tampered))
    doses, warning = step(tmp_path)
    assert doses == ["300 mg qd"]
    assert warning == (
        f"warning: the compile cache entry {entry} failed its integrity check (changed since "
        "dosing wrote it); it is ignored and replaced\n"
    )
    assert step(tmp_path) == (["300 mg qd"], "")  # replaced by a genuine entry


def test_edited_entry_with_its_old_mac_is_not_used(tmp_path: Path, genuine: Protocol) -> None:
    """The cache's own JSON, thresholds divided by 10 and the MAC left in place: not used."""
    entry = warm(tmp_path)
    mac = entry.read_bytes()[:32]
    assert model_json.loads(entry.read_bytes()[32:]) == genuine
    edited = model_json.dumps(anc_thresholds_divided_by_ten(genuine)).encode()
    entry.write_bytes(mac + edited)
    doses, warning = step(tmp_path)
    assert doses == ["300 mg qd"]
    assert "failed its integrity check" in warning


class _RunsACommand:
    """Unpickling this runs a shell command: the crafted entry of issue 10."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_runs_no_code(tmp_path: Path) -> None:
    """Every cache file replaced by a pickle that would create a file: the file never
    appears, and the decision is the genuine one."""
    cache = tmp_path / "cache"
    marker = tmp_path / "pwned"
    warm(cache)
    for path in cache.iterdir():
        path.write_bytes(pickle.dumps(_RunsACommand(marker)))
    doses, warning = step(cache)
    assert not marker.exists()
    assert doses == ["300 mg qd"]
    assert "failed its integrity check" in warning


def test_world_writable_cache_directory_is_not_used(tmp_path: Path) -> None:
    """A cache directory others can write is neither read nor written, with a warning that
    says how to fix it."""
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o777)
    doses, warning = step(cache)
    assert doses == ["300 mg qd"]
    assert warning == (
        f"warning: the compile cache {cache} can be written by other users (mode 0777); it is "
        f"not used. Make it private with: chmod go-w {cache}\n"
    )
    assert list(cache.iterdir()) == []


def test_symlinked_cache_directory_is_not_used(tmp_path: Path) -> None:
    """DOSING_CACHE_DIR that is a symbolic link is neither read nor written, with a warning."""
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    doses, warning = step(link)
    assert doses == ["300 mg qd"]
    assert warning == (
        f"warning: the compile cache {link} is a symbolic link; it is not used. Point "
        "DOSING_CACHE_DIR at a real directory of yours\n"
    )
    assert list(real.iterdir()) == []


def test_symlinked_entry_is_ignored_and_replaced(tmp_path: Path) -> None:
    """An entry that is a symbolic link (here to a copy of a genuine entry) is not followed:
    a warning, the genuine decision, and a regular file in its place; the target is intact."""
    cache = tmp_path / "cache"
    entry = warm(cache)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(entry.read_bytes())
    elsewhere.chmod(0o600)
    entry.unlink()
    entry.symlink_to(elsewhere)
    doses, warning = step(cache)
    assert doses == ["300 mg qd"]
    assert warning == (
        f"warning: the compile cache entry {entry} is a symbolic link; it is ignored and replaced\n"
    )
    assert stat.S_ISREG(os.lstat(entry).st_mode)
    assert elsewhere.read_bytes() == entry.read_bytes()


def test_entry_others_can_write_is_ignored(tmp_path: Path) -> None:
    """A world-writable entry is not read (and is replaced by a private one)."""
    entry = warm(tmp_path)
    entry.chmod(0o666)
    doses, warning = step(tmp_path)
    assert doses == ["300 mg qd"]
    assert warning == (
        f"warning: the compile cache entry {entry} can be written by other users (mode 0666); "
        f"it is not used. Make it private with: chmod go-w {entry}\n"
    )
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600


def test_key_others_can_read_turns_the_cache_off(tmp_path: Path) -> None:
    """The per-user MAC key is created owner-only; if others can read it, no cache is used."""
    warm(tmp_path)
    key = Path(os.environ["XDG_CONFIG_HOME"]) / "dosing" / "cache-key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key.chmod(0o644)
    try:
        doses, warning = step(tmp_path)
    finally:
        key.chmod(0o600)
    assert doses == ["300 mg qd"]
    assert warning == (
        f"warning: the compile cache key {key} is not private to you (mode 0644); no cache "
        "used. Delete it: dosing makes a new one\n"
    )


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda path: path.stem)
def test_every_shipped_protocol_round_trips(path: Path) -> None:
    """The cache's JSON form gives back an equal protocol."""
    protocol = load_file(path)
    assert model_json.loads(model_json.dumps(protocol)) == protocol


@pytest.mark.parametrize(
    "text",
    [
        '{"c": "Popen", "v": [["touch", "x"]]}',
        '{"c": "Protocol", "v": []}',
        '{"f": [1, 0]}',
        '{"d": [[1, 2]]}',
        "[1, 2]",
        "not json",
    ],
)
def test_json_form_builds_only_the_protocol_model(text: str) -> None:
    """Anything but a protocol in the model's own classes is refused."""
    with pytest.raises(model_json.NotAProtocol):
        model_json.loads(text)


def test_exact_numbers_survive() -> None:
    """Fractions are stored as numerator and denominator, not as floats."""
    assert model_json._plain(Fraction(1, 3)) == {"f": [1, 3]}
