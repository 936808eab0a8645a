"""JSON read strictly: numbers exact, no NaN or Infinity, no key given twice.

A lab value of 1.20 stays the decimal 1.20 (never a float); a document that JSON itself
allows but that no FHIR system writes (a key twice, NaN) is refused with a message.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from dosing.core.errors import DosingError


class JsonError(DosingError):
    """A document that is not JSON, or is JSON that dosing does not read."""


def _no_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a number JSON allows; write the value itself")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise JsonError(f"the key '{key}' is given twice in one object")
        result[key] = value
    return result


def read_json(data: bytes | str, what: str) -> Any:
    """The document in `data`, with every non-integer number a Decimal. Raises JsonError
    naming `what` (a file name, 'the request body') and where the text stops being JSON."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise JsonError(f"{what} is not UTF-8 text (byte {error.start})") from None
    data = data.removeprefix("\ufeff")
    try:
        document = json.loads(
            data, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_object
        )
    except JsonError as error:
        raise JsonError(f"{what}: {error}") from None
    except json.JSONDecodeError as error:
        raise JsonError(
            f"{what} is not JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    except ValueError:  # an integer of thousands of digits
        raise JsonError(f"{what} holds a number too long to be a measurement") from None
    except RecursionError:
        raise JsonError(f"{what} is nested too deeply to be FHIR") from None
    return document
