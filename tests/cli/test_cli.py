"""The `dosing` command as a user runs it: output, messages on stderr, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PROTOCOL_FILES, ROOT, load_file

NORMAL = ["--lab", "platelets=180x10^9/L", "--lab", "alt=30U/L", "--lab", "ast=28U/L"]
NORMAL += ["--lab", "bilirubin=0.7mg/dL", "--lab", "bleeding=no"]
NORMAL += ["--lab", "eligibility_confirmed=yes"]
ADULT = ["--patient", "age=45", "--patient", "sex=F", "--date", "2026-01-05"]


def dosing(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed command's entry point in a child process."""
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dosing", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,  # a hang fails the test instead of the CI run
    )


def step_json(*args: str) -> dict[str, Any]:
    result = dosing("step", "imatinib-hes", *ADULT, *NORMAL, *args, "--json")
    assert result.returncode == 0, result.stderr
    record: dict[str, Any] = json.loads(result.stdout)
    return record


def doses(record: dict[str, Any]) -> list[str]:
    return [f"{d['amount']} {d['unit']} {d['frequency']}" for d in record["doses"]]


@pytest.mark.parametrize("anc", ["1200/mm3", "1.2x10^9/L", "1200/uL", "1.2 K/uL", "1.2 G/L"])
def test_low_anc_starts_at_300(anc: str) -> None:
    """An adult with ANC 1.2 x10^9/L, however it is written, starts at 300 mg qd."""
    record = step_json("--lab", f"anc={anc}")
    assert (record["action"], doses(record)) == ("start", ["300 mg qd"])


@pytest.mark.parametrize("anc", ["1500/mm3", "1.5x10^9/L", "1500/uL", "1.5 K/uL", "1.5 G/L"])
def test_anc_exactly_on_the_threshold_starts_at_400(anc: str) -> None:
    """ANC exactly 1.5 x10^9/L is not below 1.5: 400 mg qd."""
    record = step_json("--lab", f"anc={anc}")
    assert (record["action"], doses(record)) == ("start", ["400 mg qd"])


def test_panel_says_dose_rule_and_margin() -> None:
    """The default output names the dose, the rule with its source, and the margin."""
    result = dosing("step", "imatinib-hes", *ADULT, *NORMAL, "--lab", "anc=1200/mm3")
    assert result.returncode == 0
    assert "START  imatinib 300 mg qd" in result.stdout
    assert "rule start-reduced  NCT00044304: Study Groups, Imatinib" in result.stdout
    assert "ANC 1200/mm3 (= 1.2 x10^9/L) < 1.5 x10^9/L (margin 0.3 x10^9/L)" in result.stdout
    assert "dosing recommends; a person decides." in result.stdout


COUNTS = "x10^9/L, 10^9/L, 10*9/L, G/L, 10^3/uL, K/uL, /mm3, /uL, cells/uL"


@pytest.mark.parametrize(
    ("lab", "message"),
    [
        ("anc=1.2", f"error: anc=1.2: a number needs its unit; accepted: {COUNTS}"),
        (
            "anc=1.2mg/dL",
            "error: anc=1.2mg/dL: mg/dL measures mass concentration, but anc is measured as count "
            f"per volume (x10^9/L); mg/dL cannot be converted to x10^9/L; accepted: {COUNTS}",
        ),
        (
            "anc=abc",
            "error: anc=abc: 'abc' does not start with a number; expected a number and a unit "
            f"({COUNTS})",
        ),
        ("neutro=1.2x10^9/L", "error: unknown observation 'neutro'; known: anc, platelets"),
        ("anc", "error: --lab 'anc': expected NAME=VALUE, e.g. --lab anc=1.2x10^9/L"),
    ],
)
def test_bad_lab_is_one_line_on_stderr(lab: str, message: str) -> None:
    """Bad input: exit 2, one line on stderr naming the value, no traceback, no dose."""
    result = dosing("step", "imatinib-hes", *ADULT, "--lab", lab)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.stderr


def test_unknown_protocol() -> None:
    """An unknown protocol id lists the shipped ones, with the closest as a did-you-mean."""
    result = dosing("step", "imatinib-xyz", "--lab", "anc=1.2x10^9/L")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: no protocol 'imatinib-xyz' (did you mean imatinib-hes?); shipped: "
    )
    assert "tacrolimus-trough" in result.stderr
    unlike = dosing("step", "xyz", "--lab", "anc=1.2x10^9/L")
    assert unlike.stderr.startswith("error: no protocol 'xyz'; shipped: ")


def test_broken_protocol_file_names_file_and_line() -> None:
    """A user's broken protocol file fails with its line and path, before any decision."""
    path = "tests/protocol/invalid_protocols/unit_mismatch.yaml"
    result = dosing("step", path, "--lab", "anc=1.2x10^9/L")
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"error: {path}:25: states.screening.transitions[1].when: 'anc < 1.5 mg/dL':"
    )


def test_protocol_missing_a_required_key_is_named_not_looped_on() -> None:
    """A protocol file without title: (once an endless loop in step and check) is named."""
    path = "tests/protocol/invalid_protocols/missing_title.yaml"
    stepped = dosing("step", path, "--lab", "anc=1.2x10^9/L")
    assert (stepped.returncode, stepped.stderr) == (
        2,
        f"error: {path}:2: title: required key missing\n",
    )
    checked = dosing("check", path, "--json")
    assert checked.returncode == 1
    assert json.loads(checked.stdout)[0]["findings"][0]["message"] == (
        f"{path}:2: title: required key missing"
    )


def test_users_own_protocol_file() -> None:
    """A path to a protocol file works like a shipped id."""
    result = dosing(
        "step", "tests/protocol/invalid_protocols/valid_tiny.yaml", "--patient", "age=40",
        "--lab", "anc=1.4 K/uL", "--date", "2026-01-05", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "dose_300"


def test_mid_course_state_and_memory() -> None:
    """--state and --memory place the patient mid-course: recovery after a first hold (the
    hold still reads the response: the 4-week evaluation applies during a hold too)."""
    record = step_json(
        "--lab", "anc=1.6x10^9/L", "--state", "hold_heme",
        "--memory", "heme_holds=1", "--memory", "held_from=dose_400",
        "--therapy-start", "2025-11-03", "--lab", "response=partial",
    )  # fmt: skip
    assert (record["action"], doses(record)) == ("resume", ["400 mg qd"])


def test_implausible_value_needs_the_flag() -> None:
    """A typo-sized platelet count is refused unless accepted knowingly."""
    refused = dosing("step", "imatinib-hes", *ADULT, "--lab", "platelets=5000x10^9/L")
    assert refused.returncode == 2
    assert "outside the plausible range 0-3000 x10^9/L" in refused.stderr
    others = [arg for pair in zip(NORMAL[::2], NORMAL[1::2], strict=True)
              if not pair[1].startswith("platelets=") for arg in pair]  # fmt: skip
    accepted = dosing(
        "step", "imatinib-hes", *ADULT, *others, "--lab", "anc=2x10^9/L", "--lab",
        "platelets=5000x10^9/L", "--accept-implausible", "--json",
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["action"] == "start"


def test_stale_lab_is_not_dosed_on() -> None:
    """A result drawn 21 days before the visit is not used: refer, and say what to measure."""
    record = step_json("--lab", "anc=2x10^9/L@2025-12-15")
    assert (record["action"], record["doses"]) == ("refer", [])
    assert (
        "ANC from 2025-12-15 is 21 days old (at most 7 days): not used; measure ANC again"
        in record["warnings"]
    )


def test_usage_error_exits_2() -> None:
    """An unknown option is a usage error (exit 2), not a crash."""
    result = dosing("step", "imatinib-hes", "--bogus")
    assert result.returncode == 2
    assert "No such option: --bogus" in result.stderr


def test_protocols_lists_what_ships() -> None:
    """`dosing protocols` lists the shipped protocols with titles."""
    result = dosing("protocols")
    assert result.returncode == 0
    assert "imatinib-hes" in result.stdout
    assert "NCT00044304" in result.stdout


def test_show_renders_states_and_rules() -> None:
    """`dosing show` lists states with doses and transitions with their sources."""
    result = dosing("show", "imatinib-hes")
    assert result.returncode == 0
    for text in (
        "dose_400",
        "imatinib 400 mg qd",
        "hematologic-hold",
        "label-imatinib",
        "lab_max_age",
    ):
        assert text in result.stdout


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda p: p.stem)
def test_show_renders_every_shipped_protocol(path: Path) -> None:
    """`dosing show` renders each shipped protocol: every state and rule appears."""
    result = dosing("show", path.stem)
    assert result.returncode == 0, result.stderr
    protocol = load_file(path)
    for state in protocol.states.values():
        assert state.name in result.stdout
        for transition in state.transitions:
            assert transition.rule in result.stdout


def test_protocols_lists_all_six() -> None:
    """`dosing protocols` lists every shipped protocol."""
    result = dosing("protocols")
    for path in PROTOCOL_FILES:
        assert path.stem in result.stdout
    assert len(PROTOCOL_FILES) == 6


def test_version() -> None:
    """`dosing --version` prints the installed version."""
    from importlib.metadata import version

    result = dosing("--version")
    assert (result.returncode, result.stdout) == (0, f"dosing {version('dosing')}\n")


def test_shell_completion_offers_commands_and_protocol_ids() -> None:
    """The completion `dosing --install-completion` installs answers with commands, then ids."""
    env = {**os.environ, "_DOSING_COMPLETE": "complete_bash"}
    script = Path(sys.executable).parent / "dosing"  # completion keys on the program's name

    def complete(words: str) -> list[str]:
        result = subprocess.run(
            [str(script)], capture_output=True, text=True, cwd=ROOT,
            env={**env, "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("dosing rep") == ["replay"]
    assert complete("dosing step imatinib-") == [
        "imatinib-escalation-nilg", "imatinib-hes", "imatinib-low-dose-mdacc",
    ]  # fmt: skip
    assert "--install-completion" in dosing("--help").stdout


@pytest.mark.parametrize("command", [["patients"], ["history", "P01"]])
def test_reading_commands_do_not_create_a_store(tmp_path: Path, command: list[str]) -> None:
    """`dosing patients` (and history) without a store say where they looked and create
    nothing: not the store, not its folder."""
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "data"), "COLUMNS": "300"}
    env.pop("DOSING_DB", None)
    result = subprocess.run(
        [sys.executable, "-m", "dosing", *command], capture_output=True, text=True, env=env,
        cwd=ROOT,
    )  # fmt: skip
    where = home / "data" / "dosing" / "patients.sqlite"
    assert result.returncode == 2
    assert result.stderr == (
        f"error: no patient store at {where} (the default place); nothing was created. "
        "`dosing visit` or `dosing import-timeline` creates it; --db or $DOSING_DB names "
        "another\n"
    )
    assert not home.exists()
    db = tmp_path / "p.sqlite"
    named = subprocess.run(
        [sys.executable, "-m", "dosing", *command], capture_output=True, text=True, cwd=ROOT,
        env={**env, "DOSING_DB": str(db)},
    )  # fmt: skip
    assert f"no patient store at {db} ($DOSING_DB)" in named.stderr
    assert not db.exists()


@pytest.mark.parametrize(
    "command",
    ["protocols", "show", "step", "replay", "check", "diff", "schema", "visit", "patients",
     "history", "import-timeline"],
)  # fmt: skip
def test_every_command_has_help_with_an_example(command: str) -> None:
    """Each command's help ends with a runnable example."""
    result = dosing(command, "--help")
    assert result.returncode == 0
    assert "Example:" in result.stdout


def test_internal_error_shows_no_values(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected error prints its type only: never a traceback or the values involved."""
    import dosing.engine.step
    from dosing.cli import app as cli

    def explode(*args: object, **kwargs: object) -> None:
        raise ValueError("patient P01 anc=0.31")

    monkeypatch.setattr(dosing.engine.step, "step", explode)
    monkeypatch.setattr(
        sys, "argv", ["dosing", "step", "imatinib-hes", *ADULT, *NORMAL, "--lab", "anc=0.31x10^9/L"]
    )
    monkeypatch.delenv("DOSING_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 70
    captured = capsys.readouterr()
    assert "internal error (ValueError); no dose was given" in captured.err
    assert "0.31" not in captured.err + captured.out
    assert "Traceback" not in captured.err


def test_compiled_protocol_cache_is_private(tmp_path: Path) -> None:
    """The compile cache is written owner-only and reused; a world-writable entry is ignored."""
    env = {**os.environ, "DOSING_CACHE_DIR": str(tmp_path)}
    args = [
        sys.executable,
        "-m",
        "dosing",
        "step",
        "imatinib-hes",
        *ADULT,
        *NORMAL,
        "--lab",
        "anc=2x10^9/L",
        "--json",
    ]
    first = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    (entry,) = tmp_path.glob("*.json")
    assert entry.stat().st_mode & 0o077 == 0
    entry.chmod(0o666)
    second = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert json.loads(first.stdout) == json.loads(second.stdout)


@pytest.mark.parametrize(
    ("lab", "message"),
    [
        (
            "anc=1 500/mm3",
            "error: anc=1 500/mm3: a space inside the number (a thousands separator?): write "
            f"1500/mm3; expected a number and a unit ({COUNTS})",
        ),
        (
            "anc=1.500/mm3",
            "error: anc=1.500/mm3: '1.500/mm3' is ambiguous: a count per mm3 has no decimals, so "
            "the point may separate thousands (1500/mm3); write the count without separators; "
            f"expected a number and a unit ({COUNTS})",
        ),
        (
            "anc=\u0661\u0662\u0660\u0660/mm3",
            "error: anc=\u0661\u0662\u0660\u0660/mm3: U+0661 ARABIC-INDIC DIGIT ONE is not a "
            f"digit dosing reads: type the digits 0-9; expected a number and a unit ({COUNTS})",
        ),
    ],
)
def test_a_misread_count_is_refused_at_the_command_line(lab: str, message: str) -> None:
    """Issue 10 items 1, 2, 5: each once gave a dose from a misread ANC; now exit 2."""
    result = dosing("step", "imatinib-hes", *ADULT, *NORMAL, "--lab", lab)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == message + "\n"


def test_a_trough_with_text_after_the_number_gives_no_dose() -> None:
    """Issue 10 item 1: '8 .5 ng/mL' was read as 4 ng/mL and raised tacrolimus 2 -> 3 mg bid."""
    result = dosing(
        "step", "tacrolimus-trough", "--date", "2026-01-05", "--lab", "tacrolimus_trough=8 .5 ng/mL"
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "error: tacrolimus_trough=8 .5 ng/mL: '.5 ng/mL' after the number 8 is not a unit (a "
        "number split by a space?); expected a number and a unit (ng/mL, ug/L, µg/L, pg/mL, "
        "nmol/L, mg/dL, umol/L, µmol/L, g/dL, g/L, mg/L, mmol/L)\n"
    )


def test_a_leading_zero_in_an_exponent_reads_as_ten_to_the_ninth() -> None:
    """Issue 10 item 3: ANC 1.2 x10^09/L was read as about 1.2e-8; it is 1.2 x10^9/L: 300 mg."""
    record = step_json("--lab", "anc=1.2 x10^09/L")
    assert (record["action"], doses(record)) == ("start", ["300 mg qd"])


def test_a_lookalike_letter_in_a_lab_name_is_named() -> None:
    """Issue 10 item 5: --lab with a Cyrillic a in anc names U+0430 and suggests anc."""
    result = dosing("step", "imatinib-hes", *ADULT, *NORMAL, "--lab", "\u0430nc=1.2x10^9/L")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: unknown observation '\u0430nc': U+0430 CYRILLIC SMALL LETTER A looks like 'a' "
        "but is not that character: retype it (did you mean anc?)"
    )


def test_fifty_thousand_levels_of_yaml_nesting_is_a_message_not_a_crash(tmp_path: Path) -> None:
    """Issue 10 item 14: 50,000 nested lists crashed libyaml (a segfault) in step and check."""
    path = tmp_path / "deep.yaml"
    path.write_text("id: deep\nextra: " + "[" * 50_000 + "]" * 50_000 + "\n")
    message = f"{path}:2: nested more than 50 levels deep; a protocol file needs a handful"
    stepped = dosing("step", str(path), "--lab", "anc=1.2x10^9/L")
    assert (stepped.returncode, stepped.stderr) == (2, f"error: {message}\n")
    checked = dosing("check", str(path), "--json")
    assert checked.returncode == 1
    assert json.loads(checked.stdout)[0]["findings"][0]["message"] == message


def test_a_billion_laughs_file_is_refused_at_once() -> None:
    """Issue 10 item 13: a 1.5 KB file of nested aliases took 53 s and 4.5 GB."""
    path = "tests/protocol/invalid_protocols/billion_laughs.yaml"
    result = dosing("step", path, "--lab", "anc=1.2x10^9/L")
    assert (result.returncode, result.stderr) == (
        2,
        f"error: {path}:7: *e expands the file to more than 100000 values (a 'billion laughs' "
        "file?); write repeated parts out, or alias less\n",
    )


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_protocol_or_timeline_that_is_not_a_file_is_refused(tmp_path: Path, kind: str) -> None:
    """Issue 10 item 16: a FIFO blocked forever and /dev/zero was read without bound."""
    if kind == "fifo":
        path, what = tmp_path / "named.yaml", "a FIFO (named pipe)"
        os.mkfifo(path)
    elif kind == "device":
        path, what = Path("/dev/zero"), "a device"
    else:
        path, what = tmp_path, "a directory"
    stepped = dosing("step", str(path), "--lab", "anc=1.2x10^9/L")
    assert (stepped.returncode, stepped.stderr) == (
        2,
        f"error: {path}: it is {what}, not a file; a protocol is read from a file\n",
    )
    replayed = dosing("replay", "imatinib-hes", str(path))
    assert (replayed.returncode, replayed.stderr) == (
        2,
        f"error: {path}: it is {what}, not a file; a timeline is read from a CSV file\n",
    )


def test_a_protocol_file_over_a_megabyte_is_refused(tmp_path: Path) -> None:
    """Issue 10 item 16: a protocol file is read up to a bound, never whole whatever its size."""
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * 1_200_000 + "\n")
    result = dosing("step", str(path), "--lab", "anc=1.2x10^9/L")
    assert (result.returncode, result.stderr) == (
        2,
        f"error: {path}: larger than 1000000 bytes; a protocol file is far smaller\n",
    )


def test_a_placeholder_visit_date_is_refused() -> None:
    """Issue 10 item 14: --date 9999-12-28 overflowed the next check (exit 70)."""
    result = dosing(
        "step", "imatinib-hes", "--date", "9999-12-28", *NORMAL, "--lab", "anc=2x10^9/L"
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "error: --date '9999-12-28': not a plausible visit date (placeholders such as 9999-12-31 "
        "and 1900-01-01 are not visits); expected a date from 1901 to 2199\n"
    )


TIMELINE = "examples/imatinib-hes-timeline.csv"


def output_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    """Each place a result is written, pointed somewhere it cannot go, and the message."""
    afile = tmp_path / "notes.txt"
    afile.write_text("not a folder\n")
    replay = ["replay", "imatinib-hes", TIMELINE, "--format", "jsonl"]
    return [
        (
            [*replay, "--output", str(tmp_path)],
            f"--output {tmp_path}: it is a directory; give a file name",
        ),
        (
            [*replay, "--output", str(afile / "out.jsonl")],
            f"--output {afile / 'out.jsonl'}: {afile} is not a folder",
        ),
        (
            [*replay, "--rejects", str(tmp_path / "missing" / "rejects.csv")],
            f"--rejects {tmp_path / 'missing' / 'rejects.csv'}: there is no folder "
            f"{tmp_path / 'missing'}",
        ),
        ([*replay, "--plot", str(afile)], f"--plot {afile}: it is a file, not a folder"),
        (
            ["show", "imatinib-hes", "--format", "mermaid", "--output", str(tmp_path)],
            f"--output {tmp_path}: it is a directory; give a file name",
        ),
        (
            ["history", "P01", "--plot", str(afile / "p.png"), "--db", str(tmp_path / "s.db")],
            f"--plot {afile / 'p.png'}: {afile} is not a folder",
        ),
    ]


def test_an_output_that_cannot_be_written_is_one_line_before_any_work(tmp_path: Path) -> None:
    """Issue 10 item 14: an unwritable --output, --rejects, --plot or show --output, or an
    --output naming a directory, was 'internal error (IsADirectoryError)', exit 70."""
    for args, message in output_cases(tmp_path):
        result = dosing(*args)
        assert (result.returncode, result.stdout, result.stderr) == (2, "", f"error: {message}\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_named(tmp_path: Path) -> None:
    """Issue 10 item 14: --output into a folder without write permission."""
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    result = dosing("replay", "imatinib-hes", TIMELINE, "--output", str(folder / "out.txt"))
    assert (result.returncode, result.stderr) == (
        2,
        f"error: --output {folder / 'out.txt'}: cannot write in {folder} (permission denied)\n",
    )


@pytest.mark.parametrize(
    "args",
    [
        ["protocols"],
        ["step", "imatinib-hes", *ADULT, *NORMAL, "--lab", "anc=2x10^9/L", "--json"],
        ["replay", "imatinib-hes", TIMELINE, "--format", "jsonl"],
    ],
    ids=["protocols", "step", "replay"],
)
def test_standard_output_to_a_full_disk_is_one_line(args: list[str]) -> None:
    """Issue 10 item 14: stdout to /dev/full was 'internal error (OSError)', exit 70."""
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "dosing", *args],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
    assert (result.returncode, result.stderr) == (
        74,
        "error: cannot write to standard output: No space left on device\n",
    )


@pytest.mark.parametrize(
    ("argv", "consequence"),
    [
        (["check", "imatinib-hes"], "; the check did not finish. "),
        (["show", "imatinib-hes"], ". "),
        (["replay", "imatinib-hes", TIMELINE], "; the replay did not finish, so its output is "),
    ],
)
def test_an_internal_error_says_what_it_means_for_that_command(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    consequence: str,
) -> None:
    """Issue 10 item 14: 'no dose was given' was said by commands that never give one."""
    from dosing.cli import app as cli
    from dosing.protocol import catalog

    def explode(reference: str) -> None:
        raise ValueError("patient data")

    monkeypatch.setattr(catalog, "load", explode)
    monkeypatch.setattr(sys, "argv", ["dosing", *argv])
    monkeypatch.delenv("DOSING_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 70
    err = capsys.readouterr().err
    assert err.startswith(f"error: internal error (ValueError){consequence}")
    assert "no dose was given" not in err


def test_square_brackets_in_what_was_typed_are_shown_as_typed() -> None:
    """Found by fuzzing: '[/]' in a value crashed the error path with a traceback, and '[red]'
    vanished from the message as if it were markup, misquoting the value."""
    crashed = dosing("step", "imatinib-hes", *ADULT, "--lab", "anc=[/]1")
    assert (crashed.returncode, crashed.stderr) == (
        2,
        f"error: anc=[/]1: '[/]1' does not start with a number; expected a number and a unit "
        f"({COUNTS})\n",
    )
    hidden = dosing("step", "imatinib-hes", *ADULT, "--lab", "anc=[red]1")
    assert hidden.stderr.startswith("error: anc=[red]1: '[red]1' does not start with a number")
    panel = dosing(
        "step", "imatinib-hes", *ADULT, *NORMAL, "--lab", "anc=2x10^9/L", "--patient-id", "[/]P1"
    )
    assert panel.returncode == 0, panel.stderr
    assert "[/]P1 · imatinib-hes" in panel.stdout


def test_square_brackets_in_a_replayed_row_are_shown_as_typed(tmp_path: Path) -> None:
    """Found by fuzzing: a dose given of '1[/]mg bid' crashed the replay table (MarkupError)."""
    path = tmp_path / "t.csv"
    text = (ROOT / "examples" / "tacrolimus-trough-wide.csv").read_text()
    path.write_text(
        text.replace("T01;2026-02-02;46;;;;1 mg bid", "T01;2026-02-02;46;;;;1[/]mg bid")
    )
    result = dosing("replay", "tacrolimus-trough", str(path))
    assert result.returncode == 0, result.stderr
    assert "1[/]mg bid" in result.stdout


def test_two_different_values_of_one_lab_are_an_error() -> None:
    """--lab anc=1.2 and --lab anc=1.5 for one draw: exit 2 naming both, never a dose (the
    later one used to win: 400 mg, where ANC 1.2 alone gives 300 mg)."""
    result = dosing(
        "step",
        "imatinib-hes",
        *ADULT,
        *NORMAL,
        "--lab",
        "anc=1.2x10^9/L",
        "--lab",
        "anc=1.5x10^9/L",
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        "error: two different values for one draw: anc drawn 2026-01-05 was given as "
        "1.2x10^9/L and as 1.5x10^9/L; give the one that is right\n"
    )


def test_the_same_value_twice_is_no_conflict() -> None:
    """One ANC written twice, in two units, is one value: 300 mg qd."""
    record = step_json("--lab", "anc=1.2x10^9/L", "--lab", "anc=1200/mm3")
    assert (record["action"], doses(record)) == ("start", ["300 mg qd"])


@pytest.mark.parametrize("option", ["--therapy-start", "--state-since", "--dose-since"])
def test_a_course_date_after_the_visit_is_an_error(option: str) -> None:
    """--therapy-start 2027-01-01 on a visit of 2026-01-05 used to give CONTINUE 400 mg with
    'days on therapy -361 days'; now exit 2 with a message, and no dose."""
    result = dosing(
        "step", "imatinib-hes", *ADULT, *NORMAL, "--lab", "anc=2x10^9/L", "--state", "dose_400",
        option, "2027-01-01",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {option} 2027-01-01 is after the visit date 2026-01-05; a course cannot start, "
        "or be at its state or dose, after the visit it decides\n"
    )
