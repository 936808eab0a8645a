"""The README stays true: its two set-up commands, and the session it shows."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def marked_command(marker: str) -> str:
    block = re.search(rf"<!-- {marker} -->\n```console\n(.+?)\n```", README, re.DOTALL)
    assert block is not None, marker
    return block.group(1)


def test_two_setup_commands() -> None:
    """The README has exactly two set-up commands: install-and-run, and test."""
    assert README.count("<!-- main-command -->") == 1
    assert README.count("<!-- test-command -->") == 1
    assert marked_command("main-command").startswith(
        "python3 -m venv .venv && .venv/bin/pip install . && "
    )
    assert (
        marked_command("test-command")
        == "python3 -m venv .venv && .venv/bin/pip install '.[test]' && .venv/bin/pytest"
    )


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run reads the test command from the README rather than repeating it."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "<!-- test-command -->" in ci
    assert 'bash -c "$test_command"' in ci


def test_session_shown_is_what_dosing_prints() -> None:
    """Every `$ dosing ...` in the README prints exactly what follows it."""
    session = re.search(r"## A visit\n\n```console\n(.+?)\n```", README, re.DOTALL)
    assert session is not None
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    for command, expected in re.findall(
        r"^\$ (dosing .+)\n((?:(?!\$ ).*\n?)*)", session.group(1) + "\n", re.MULTILINE
    ):
        args = shlex.split(command)[1:]
        result = subprocess.run(
            [sys.executable, "-m", "dosing", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert (result.stdout + result.stderr).rstrip("\n") == expected.rstrip("\n"), command


def test_main_command_replays_the_example() -> None:
    """The README's main command replays the shipped example (here without the install part)."""
    command = marked_command("main-command").split("&& ")[-1]
    assert command.startswith(".venv/bin/dosing replay imatinib-hes examples/")
    args = shlex.split(command)[1:]
    env = {**os.environ, "COLUMNS": "120"}
    result = subprocess.run(
        [sys.executable, "-m", "dosing", *args], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "resume-300-recurrence" in result.stdout
    assert "observations: 119 = used 119" in result.stdout
