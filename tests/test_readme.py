"""The README stays true: its two set-up commands, and every session it shows.

Each ```console block with `$ dosing ...` lines is run as a user would run it, in an
80-column pseudo-terminal without colour (TERM=dumb), in a fresh folder with the examples
beside it and no store yet; the prompts of `dosing visit` are answered as the README shows
them. What dosing prints must be what the README says. After a deliberate change, rewrite
the sessions from what dosing now prints, and review the diff:
    python -m tests.test_readme
"""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pexpect

from tests.conftest import ROOT

README_PATH = ROOT / "README.md"
README = README_PATH.read_text(encoding="utf-8")
COLUMNS = 80
_BLOCK = re.compile(r"```console\n(\$ .+?)\n```", re.DOTALL)
_COMMAND = re.compile(r"^\$ (.+)$", re.MULTILINE)
_PROMPT = re.compile(r"^(?P<prompt>[^│╭╰ ].*?[)\]]): ?(?P<answer>.*)$")
"""A prompt of `dosing visit` and the answer typed: 'ANC (x10^9/L) [Enter: ...]: 1.2 x10^9/L'."""
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def marked_command(marker: str) -> str:
    block = re.search(rf"<!-- {marker} -->\n```console\n(.+?)\n```", README, re.DOTALL)
    assert block is not None, marker
    return block.group(1)


def sessions(text: str = README) -> list[str]:
    """Every console block that shows `$` commands, as written."""
    return _BLOCK.findall(text)


def steps(session: str) -> list[tuple[str, list[str]]]:
    """(command, the lines shown after it) for each `$` line of a session."""
    found: list[tuple[str, list[str]]] = []
    for line in session.splitlines():
        command = _COMMAND.match(line)
        if command:
            found.append((command.group(1), []))
        else:
            found[-1][1].append(line)
    return found


def run_session(session: str) -> str:
    """Run a session's commands in order, in a fresh folder, and return the transcript."""
    with tempfile.TemporaryDirectory() as folder:
        here = Path(folder)
        (here / "examples").symlink_to(ROOT / "examples")
        unset = ("COLUMNS", "LINES", "DOSING_DB", "DOSING_CLINICIAN")
        env = {k: v for k, v in os.environ.items() if k not in unset}
        env.update(HOME=str(here / "home"), XDG_DATA_HOME=str(here / "home" / "data"))
        env.update(TERM="dumb", NO_COLOR="1")
        out = []
        for command, shown in steps(session):
            out.append(f"$ {command}")
            words = shlex.split(command)
            if words[0] == "export":
                for word in words[1:]:
                    name, _, value = word.partition("=")
                    env[name] = value
                continue
            assert words[0] == "dosing", command
            out += _run(words[1:], shown, here, env)
        return "\n".join(out)


def _run(args: list[str], shown: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    child = pexpect.spawn(
        sys.executable, ["-m", "dosing", *args], cwd=str(cwd), env=env, encoding="utf-8",
        dimensions=(500, COLUMNS), timeout=120,
    )  # fmt: skip
    child.logfile_read = seen = io.StringIO()  # everything shown, echoed answers included
    for line in shown:
        prompt = _PROMPT.match(line)
        if prompt:
            child.expect_exact(f"{prompt['prompt']}: ")
            child.sendline(prompt["answer"])
    child.expect(pexpect.EOF)
    child.close()
    text = _ESCAPES.sub("", seen.getvalue()).replace("\r\n", "\n").rstrip("\n")
    return [line.rstrip() for line in text.split("\n")]


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


def test_every_session_prints_what_the_readme_shows() -> None:
    """Issue 15: every `$ dosing ...` in the README, run in order in a fresh folder, prints
    exactly what follows it: a visit with its prompts answered, patients, history, the
    store, an import, a replay, a check."""
    found = sessions()
    assert len(found) >= 5
    for session in found:
        assert run_session(session) == session


def test_the_readme_covers_every_way_of_working() -> None:
    """Issue 15: the README shows every command, the store and $DOSING_DB."""
    commands = {
        shlex.split(c)[1] for s in sessions() for c, _ in steps(s) if c.startswith("dosing")
    }
    assert {"visit", "patients", "history", "import-timeline", "replay", "step", "check"} <= (
        commands
    )
    assert "--version" in commands
    for words in ("$DOSING_DB", "--db", "--install-completion", "SQLite", "exit"):
        assert words in README, words


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


if __name__ == "__main__":
    text = README
    for session in sessions(text):
        text = text.replace(session, run_session(session), 1)
    README_PATH.write_text(text, encoding="utf-8")
    print(f"rewrote {len(sessions(text))} sessions in {README_PATH}")
