"""dosing show --format mermaid|dot: every state and rule drawn; DOT rendered by Graphviz."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dosing.protocol.diagram import dot, mermaid
from tests.conftest import PROTOCOL_FILES, ROOT, load_file


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda p: p.stem)
def test_mermaid_has_every_state_and_rule(path: Path) -> None:
    """Each state with its dose, each rule as an edge, the start and the final states."""
    protocol = load_file(path)
    text = mermaid(protocol)
    assert text.startswith("stateDiagram-v2\n")
    assert f"[*] --> {protocol.initial}" in text
    for name, state in protocol.states.items():
        assert f"    {name} : {name}<br/>" in text
        for transition in state.transitions:
            assert (
                f"    {name} --> {transition.target} : {transition.rule} [{transition.priority}]"
                in text
            )


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda p: p.stem)
def test_dot_has_every_state_and_rule(path: Path) -> None:
    protocol = load_file(path)
    text = dot(protocol)
    assert text.startswith(f'digraph "{protocol.id}" {{')
    for name, state in protocol.states.items():
        for transition in state.transitions:
            edge = f'"{name}" -> "{transition.target}"'
            assert f'{edge} [label="{transition.rule} [{transition.priority}]' in text


def test_ladder_states_show_their_range() -> None:
    """A state dosed from a ladder shows the ladder's range."""
    text = mermaid(load_file(ROOT / "protocols" / "imatinib-escalation-nilg.yaml"))
    assert "on_imatinib : on_imatinib<br/>imatinib 100-400 mg qd (by level)" in text


def run(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "dosing", *args], capture_output=True, text=True, env=env, cwd=ROOT
    )


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")
def test_dot_is_rendered_to_svg(tmp_path: Path) -> None:
    """With Graphviz present, --output x.svg draws the state machine."""
    svg = tmp_path / "nilg.svg"
    result = run("show", "imatinib-escalation-nilg", "--format", "dot", "--output", str(svg))
    assert result.returncode == 0, result.stderr
    assert "<svg" in svg.read_text()
    assert "escalate&#45;weekly" in svg.read_text()  # Graphviz writes '-' as an entity


def test_without_graphviz_says_how_to_install_it(tmp_path: Path) -> None:
    """Without `dot` on the PATH: the source is kept, the message says how to get Graphviz."""
    svg = tmp_path / "nilg.svg"
    result = run(
        "show",
        "imatinib-escalation-nilg",
        "--format",
        "dot",
        "--output",
        str(svg),
        path=str(tmp_path),
    )
    assert result.returncode == 1
    assert "Graphviz is not installed" in result.stderr
    assert "apt-get install graphviz" in result.stderr
    assert not svg.exists()
    assert (tmp_path / "nilg.dot").read_text().startswith('digraph "imatinib-escalation-nilg"')
