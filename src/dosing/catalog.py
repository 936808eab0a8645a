"""Where protocols come from: the ones shipped inside the package, or a user's own file.

Compiling a protocol (YAML, shape, guards, units) costs more than the rest of `dosing step`,
so a compiled protocol is cached in the user's cache directory, keyed by the sha256 of the
file's text and of dosing's own code. The cache is written atomically with owner-only
permissions, and a cache file that another user owns or could write is ignored.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
import tempfile
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from dosing.errors import ProtocolError
from dosing.model import Protocol


def _shipped() -> Traversable:
    packaged = resources.files("dosing") / "protocols"
    if packaged.is_dir():
        return packaged
    # Running from a source checkout (not installed): the repository's protocols/ folder.
    return Path(__file__).resolve().parents[2] / "protocols"


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
        from dosing.files import NotAFile, read_protocol_bytes

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
        raise ProtocolError(
            f"no protocol '{reference}'; shipped: {', '.join(shipped_ids())} "
            "(or give a path to a .yaml file)"
        )
    return entry.read_text(encoding="utf-8"), f"{reference}.yaml"


def load(reference: str) -> Protocol:
    """Load and check a protocol by id or path (compiled once, then from the cache)."""
    text, name = protocol_text(reference)
    return compiled(text, name)


@cache
def _code_fingerprint() -> str:
    digest = hashlib.sha256(sys.version.encode())
    package = Path(__file__).parent
    for path in sorted(package.glob("*.py")) + sorted(package.glob("*.txt")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _cache_dir() -> Path | None:
    if os.environ.get("DOSING_NO_CACHE"):
        return None
    configured = os.environ.get("DOSING_CACHE_DIR")
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_cache_dir("dosing", appauthor=False))


def _trusted(path: Path) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    owned = not hasattr(os, "getuid") or info.st_uid == os.getuid()
    return owned and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def compiled(text: str, name: str) -> Protocol:
    """The checked protocol for `text`, from the cache when a trusted entry exists."""
    sha = hashlib.sha256(text.encode()).hexdigest()
    folder = _cache_dir()
    path = None
    if folder is not None:
        key = hashlib.sha256(f"{sha}:{_code_fingerprint()}".encode()).hexdigest()
        path = folder / f"{key}.pickle"
        if _trusted(path):
            try:
                cached = pickle.loads(path.read_bytes())
            except Exception:  # a damaged entry is rebuilt, never trusted
                cached = None
            if isinstance(cached, Protocol) and cached.sha256 == sha:
                return cached
    from dosing.protocol_file import load_protocol

    protocol = load_protocol(text, name)
    if path is not None:
        _store(path, protocol)
    return protocol


def _store(path: Path, protocol: Protocol) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                pickle.dump(protocol, stream, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    except OSError:
        pass  # no cache is slower, not wrong
