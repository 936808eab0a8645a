"""Where protocols come from: the ones shipped inside the package, or a user's own file.

A compiled protocol is kept in the user's cache directory (`compile_cache`), so that
`dosing step` does not compile it again on every run.
"""

from __future__ import annotations

import difflib
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from dosing.core.errors import ProtocolError
from dosing.protocol.model import Protocol


def _shipped() -> Traversable:
    packaged = resources.files("dosing") / "protocols"
    if packaged.is_dir():
        return packaged
    # Running from a source checkout (not installed): the repository's protocols/ folder.
    return Path(__file__).resolve().parents[3] / "protocols"


def shipped_ids() -> list[str]:
    """Ids of the protocols that ship with dosing, sorted."""
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in _shipped().iterdir()
        if entry.name.endswith(".yaml")
    )


def protocol_text(reference: str) -> tuple[str, str]:
    """(text, name for messages) of a shipped id or a path to a protocol file."""
    if reference.endswith((".yaml", ".yml")) or "/" in reference or "\\" in reference:
        from dosing.core.files import NotAFile, read_protocol_bytes

        path = Path(reference)
        try:
            return read_protocol_bytes(path).decode("utf-8"), str(path)
        except NotAFile as error:
            raise ProtocolError(f"{reference}: {error}; a protocol is read from a file") from None
        except OSError as error:
            raise ProtocolError(
                f"cannot read protocol file {reference}: {error.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise ProtocolError(f"{reference}: not UTF-8 text") from None
        except ValueError as error:  # too large
            raise ProtocolError(f"{reference}: {error}; a protocol file is far smaller") from None
    entry = _shipped() / f"{reference}.yaml"
    if not entry.is_file():
        shipped = shipped_ids()
        close = difflib.get_close_matches(reference.strip().lower(), shipped, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ProtocolError(
            f"no protocol '{reference}'{hint}; shipped: {', '.join(shipped)} "
            "(or give a path to a .yaml file)"
        )
    return entry.read_text(encoding="utf-8"), f"{reference}.yaml"


def load(reference: str) -> Protocol:
    """Load and check a protocol by id or path (compiled once, then from the cache)."""
    text, name = protocol_text(reference)
    return compiled(text, name)


def compiled(text: str, name: str) -> Protocol:
    """The checked protocol for `text`, from the compile cache when a verified entry exists."""
    from dosing.protocol import compile_cache

    return compile_cache.compiled(text, name, _compile)


def _compile(text: str, name: str) -> Protocol:
    from dosing.protocol.loader import load_protocol

    return load_protocol(text, name)
