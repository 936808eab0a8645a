"""dosing schema: every shipped protocol validates against it; unknown keys do not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dosing.protocol.schema import protocol_schema
from dosing.protocol.yaml_source import read_yaml
from tests.conftest import PROTOCOL_FILES, ROOT

SCHEMA = protocol_schema()


def read(path: Path) -> Any:
    return read_yaml(path.read_text(encoding="utf-8"), path.name)[0]


def test_schema_is_valid_json_schema() -> None:
    """The schema itself follows the 2020-12 metaschema."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda p: p.stem)
def test_shipped_protocol_validates(path: Path) -> None:
    jsonschema.validate(read(path), SCHEMA)


def test_unknown_key_is_refused_by_the_schema() -> None:
    """A typo in a key is caught by an editor, as it is by the loader."""
    data = read(ROOT / "tests" / "protocol" / "invalid_protocols" / "unknown_key.yaml")
    with pytest.raises(jsonschema.ValidationError, match="'too' was unexpected"):
        jsonschema.validate(data, SCHEMA)


def test_schema_command_prints_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dosing", "schema"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads(json.dumps(SCHEMA))
