"""The compiled-protocol cache: faster startup, never a way in.

Compiling a protocol (YAML, shape, guards, units) costs more than the rest of `dosing step`, so
the compiled form is kept in the user's cache directory, one file per protocol text and
version of dosing's code. Whoever can write that directory must not be able to change a
decision or run code, so:

- an entry is JSON (`model_json`), which can only rebuild the model's own classes; nothing is
  ever unpickled;
- an entry carries an HMAC-SHA256 of its name and content under a per-user secret, kept
  owner-only in the user's config directory; an entry whose MAC does not verify is ignored,
  and the protocol read back must carry the sha256 of the text being loaded;
- a cache directory that is a symbolic link, is not a directory, belongs to another user or
  can be written by others is not used at all; entries are opened relative to the checked
  directory, never through a symbolic link (O_NOFOLLOW), and must be regular files of ours.

Anything refused is said once on stderr, as a warning: the protocol is then compiled from its
text, which is slower, never wrong.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import os
import stat
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

from dosing.protocol import model_json
from dosing.protocol.model import Protocol

_MAC_BYTES = 32
_SECRET_BYTES = 32
_MAX_ENTRY = 16 * 1024 * 1024
_SAFE = hasattr(os, "O_NOFOLLOW") and hasattr(os, "getuid") and os.open in os.supports_dir_fd


_warned: set[str] = set()


def warn(message: str) -> None:
    """One line on stderr, once per process. A plain write: rich is not loaded on the path of
    `dosing step --json`, and this must not slow it."""
    if message not in _warned:
        _warned.add(message)
        sys.stderr.write(f"warning: {message}\n")


def compiled(text: str, name: str, compile_text: Callable[[str, str], Protocol]) -> Protocol:
    """The protocol compiled from `text`: from a verified cache entry, else compiled (and the
    entry written for next time)."""
    sha = hashlib.sha256(text.encode()).hexdigest()
    folder = _cache_dir()
    if folder is None or not _SAFE:
        return compile_text(text, name)
    entry = f"{hashlib.sha256(f'{sha}:{_code_fingerprint()}'.encode()).hexdigest()}.json"
    directory = _open_directory(folder)
    if directory is None:
        return compile_text(text, name)
    try:
        secret = _secret()
        if secret is not None:
            cached = _read(directory, folder, entry, secret)
            if cached is not None and cached.sha256 == sha:
                return cached
        protocol = compile_text(text, name)
        if secret is not None:
            _write(directory, entry, secret, protocol)
        return protocol
    finally:
        os.close(directory)


def _cache_dir() -> Path | None:
    if os.environ.get("DOSING_NO_CACHE"):
        return None
    configured = os.environ.get("DOSING_CACHE_DIR")
    if configured:
        return Path(configured)
    import platformdirs

    return Path(platformdirs.user_cache_dir("dosing", appauthor=False))


@cache
def _code_fingerprint() -> str:
    digest = hashlib.sha256(sys.version.encode())
    package = Path(__file__).parents[1]
    for path in sorted(package.rglob("*.py")) + sorted(package.rglob("*.txt")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _private_problem(info: os.stat_result, what: str, path: Path) -> str | None:
    """Why a file or folder of the cache cannot be trusted, or None."""
    if info.st_uid != os.getuid():
        return f"{what} {path} belongs to another user (uid {info.st_uid}); it is not used"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        mode = stat.S_IMODE(info.st_mode)
        return (
            f"{what} {path} can be written by other users (mode {mode:04o}); it is not used. "
            f"Make it private with: chmod go-w {path}"
        )
    return None


def _open_directory(folder: Path) -> int | None:
    """A descriptor of the cache directory once it is known to be a private real directory."""
    try:
        try:
            info = os.lstat(folder)
        except FileNotFoundError:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = os.lstat(folder)
    except OSError as error:
        warn(f"the compile cache {folder} cannot be used: {error.strerror}")
        return None
    if stat.S_ISLNK(info.st_mode):
        warn(
            f"the compile cache {folder} is a symbolic link; it is not used. "
            "Point DOSING_CACHE_DIR at a real directory of yours"
        )
        return None
    if not stat.S_ISDIR(info.st_mode):
        warn(f"the compile cache {folder} is not a directory; it is not used")
        return None
    problem = _private_problem(info, "the compile cache", folder)
    if problem:
        warn(problem)
        return None
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        warn(f"the compile cache {folder} cannot be used: {error.strerror}")
        return None
    opened = os.fstat(descriptor)
    if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):  # swapped meanwhile
        os.close(descriptor)
        warn(f"the compile cache {folder} changed while it was opened; it is not used")
        return None
    return descriptor


def _read(directory: int, folder: Path, entry: str, secret: bytes) -> Protocol | None:
    path = folder / entry
    try:
        descriptor = os.open(entry, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            warn(f"the compile cache entry {path} is a symbolic link; it is ignored and replaced")
        else:
            warn(f"the compile cache entry {path} cannot be read ({error.strerror}); ignored")
        return None
    with os.fdopen(descriptor, "rb") as stream:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_ENTRY:
            warn(f"the compile cache entry {path} is not a regular file of ours; ignored")
            return None
        problem = _private_problem(info, "the compile cache entry", path)
        if problem:
            warn(problem)
            return None
        content = stream.read(_MAX_ENTRY + 1)
    mac, payload = content[:_MAC_BYTES], content[_MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(secret, entry, payload)):
        warn(
            f"the compile cache entry {path} failed its integrity check (changed since dosing "
            "wrote it); it is ignored and replaced"
        )
        return None
    try:
        return model_json.loads(payload)
    except model_json.NotAProtocol:
        return None  # written by us with a valid MAC: a version mismatch, rebuilt quietly


def _write(directory: int, entry: str, secret: bytes, protocol: Protocol) -> None:
    """Write the entry atomically (a private temporary file renamed over it)."""
    payload = model_json.dumps(protocol).encode()
    temporary = f".{entry}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        descriptor = os.open(temporary, flags, 0o600, dir_fd=directory)
        try:
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(_mac(secret, entry, payload) + payload)
            os.replace(temporary, entry, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            os.unlink(temporary, dir_fd=directory)
            raise
    except OSError:
        pass  # no cache is slower, not wrong


def _mac(secret: bytes, entry: str, payload: bytes) -> bytes:
    return hmac.new(secret, entry.encode() + b"\0" + payload, hashlib.sha256).digest()


def _secret() -> bytes | None:
    """The per-user key for the cache's MACs: created once, owner-only, never through a link."""
    import platformdirs

    folder = Path(platformdirs.user_config_dir("dosing", appauthor=False))
    path = folder / "cache-key"
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            if not _create_secret(folder, path):
                return None
            continue
        except OSError as error:
            warn(f"the compile cache key {path} cannot be read ({error.strerror}); no cache used")
            return None
        with os.fdopen(descriptor, "rb") as stream:
            info = os.fstat(descriptor)
            secret = stream.read(_SECRET_BYTES + 1)
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
            warn(
                f"the compile cache key {path} is not private to you (mode "
                f"{stat.S_IMODE(info.st_mode):04o}); no cache used. Delete it: dosing makes a "
                "new one"
            )
            return None
        if not stat.S_ISREG(info.st_mode) or len(secret) != _SECRET_BYTES:
            warn(f"the compile cache key {path} is damaged; no cache used. Delete it")
            return None
        return secret
    return None


def _create_secret(folder: Path, path: Path) -> bool:
    """Write a new key atomically; if another process wins the race, theirs is used."""
    temporary = folder / f".cache-key.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        descriptor = os.open(temporary, flags, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(os.urandom(_SECRET_BYTES))
            stream.flush()
            os.fsync(stream.fileno())
        with contextlib.suppress(FileExistsError):  # never replace a key: use the winner's
            os.link(temporary, path)
        return True
    except OSError as error:
        warn(f"the compile cache key {path} cannot be written ({error.strerror}); no cache used")
        return False
    finally:
        temporary.unlink(missing_ok=True)
