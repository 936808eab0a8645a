"""The read stage of a protocol file: YAML text -> plain data, with the line of every path.

Only what a protocol needs is read: mappings, lists, text, whole numbers, true/false and
nothing. The data is built from libyaml's event stream in one pass, without recursion, so
what a protocol never holds is refused with its line before it can cost anything: control
characters, a key given twice, tags (!!binary, !!set, !!python/...), nesting deeper than a
protocol needs (libyaml's own composer recurses, and 50,000 levels crashed it), and aliases
that expand beyond any real protocol (a 1.5 KB 'billion laughs' file once took 53 s and
4.5 GB). Shipped protocols share monitoring and rules with &anchors and *aliases; those are
read as before, an alias being the same value as its anchor.

Plain scalars resolve to nothing (~, null, empty), true/false, a whole number, or text; yes/no,
dates and decimals stay text (answers, days, exact numbers), so a type that is wrong is
refused by the loader rather than coerced.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs
import yaml

from dosing.core.characters import describe
from dosing.core.errors import ProtocolError

MAX_CHARACTERS = 1_000_000
"""The longest protocol file read: the largest shipped one is about 70,000 characters."""
MAX_DEPTH = 50
"""Mappings and lists inside one another: a protocol needs about eight."""
MAX_VALUES = 100_000
"""Values in the file once every alias is written out: shipped ones have under 10,000."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")
_NOTHING = frozenset({"", "~", "null", "Null", "NULL"})
_BOOLEANS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False}
_BOOLEANS["FALSE"] = False
_WHOLE = re.compile(r"-?(?:0|[1-9][0-9]{0,17})")
_Parser: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_Fail = Callable[[yaml.Event, str], ProtocolError]


@attrs.define
class _Collection:
    """A mapping or list being read: its value, its path, how many values it holds."""

    value: dict[Any, Any] | list[Any]
    path: str
    anchor: str | None
    line: int
    values: int = 1
    """Values inside, aliases written out (for the billion-laughs bound)."""
    keys: dict[str, int] = attrs.Factory(dict)
    """A mapping's keys so far, with their lines."""
    key: str = ""
    key_line: int = 0
    has_key: bool = False
    """In a mapping, whether a key waits for its value."""


def read_yaml(text: str, name: str) -> tuple[Any, dict[str, int]]:
    """The file's data and the line of each path ('states.hold.transitions[0].when').
    Raises ProtocolError naming the file and line."""
    if len(text) > MAX_CHARACTERS:
        raise ProtocolError(
            f"{name}: {len(text)} characters; a protocol file is at most {MAX_CHARACTERS}"
        )
    control = _CONTROL.search(text)
    if control is not None:
        line = text.count("\n", 0, control.start()) + 1
        column = control.start() - (text.rfind("\n", 0, control.start()) + 1) + 1
        raise ProtocolError(
            f"{name}:{line}: {describe(control.group())} at column {column}: a protocol file "
            "is text, without control characters"
        )
    try:
        return _Reader(name).read(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ProtocolError(f"{name}:{line}: not valid YAML: {error.problem}") from None
    except yaml.YAMLError as error:
        raise ProtocolError(f"{name}: not valid YAML: {error}") from None


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1 if event.start_mark is not None else 1


def _scalar(event: yaml.ScalarEvent) -> Any:
    """A plain scalar resolved (nothing, true/false, a whole number, text); quoted is text."""
    value = event.value
    if not event.implicit[0]:  # quoted, or a block scalar
        return value
    if value in _NOTHING:
        return None
    if value in _BOOLEANS:
        return _BOOLEANS[value]
    if _WHOLE.fullmatch(value):
        return int(value)
    return value


class _Reader:
    """Builds the data from events, with an explicit stack instead of recursion."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: dict[str, int] = {}
        self.stack: list[_Collection] = []
        self.anchors: dict[str, tuple[Any, int]] = {}
        self.total = 0
        self.document: Any = None

    def fail(self, event: yaml.Event, message: str) -> ProtocolError:
        return ProtocolError(f"{self.name}:{_line(event)}: {message}")

    def read(self, text: str) -> tuple[Any, dict[str, int]]:
        for event in yaml.parse(text, Loader=_Parser):
            if isinstance(event, yaml.CollectionEndEvent):
                done = self.stack.pop()
                if isinstance(done.value, dict):
                    _merge(done.value, done.line, self)
                self.finish(done.value, done.values, done.anchor)
            elif isinstance(event, yaml.NodeEvent):
                self.node(event)
            elif isinstance(event, yaml.DocumentStartEvent) and self.document is not None:
                raise self.fail(event, "a protocol file holds one document (no '---' between)")
        return self.document, self.lines

    def node(self, event: yaml.NodeEvent) -> None:
        line = _line(event)
        parent = self.stack[-1] if self.stack else None
        key = parent is not None and isinstance(parent.value, dict) and not parent.has_key
        if key:
            assert parent is not None
            if (
                not isinstance(event, yaml.ScalarEvent)
                or event.tag is not None
                or event.anchor is not None
                or not event.value.strip()
            ):
                where = f"{parent.path}: " if parent.path else ""
                raise self.fail(
                    event,
                    f"{where}a key is a plain name, not empty, a list, a mapping or an anchor",
                )
            self.key(parent, event, line)
            return
        path = self.path(parent)
        # A value in a mapping is found by its key's line, as a person points at it.
        in_mapping = parent is not None and isinstance(parent.value, dict)
        self.lines.setdefault(path, parent.key_line if parent is not None and in_mapping else line)
        tag = getattr(event, "tag", None)
        if tag is not None:
            where = f"{path}: " if path else ""
            raise self.fail(
                event,
                f"{where}the tag {tag.replace('tag:yaml.org,2002:', '!!')} is not read; a protocol "
                "file holds plain text, numbers, true/false, lists and mappings",
            )
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in self.anchors:
                raise self.fail(
                    event, f"{path}: *{event.anchor} names no &{event.anchor} before it"
                )
            value, values = self.anchors[event.anchor]
            self.count(event, values)
            self.finish(value, values, None)
        elif isinstance(event, yaml.ScalarEvent):
            self.count(event, 1)
            self.finish(_scalar(event), 1, event.anchor)
        elif isinstance(event, yaml.CollectionStartEvent):
            self.count(event, 1)
            if len(self.stack) >= MAX_DEPTH:
                raise self.fail(
                    event,
                    f"nested more than {MAX_DEPTH} levels deep; a protocol file needs a handful",
                )
            empty: dict[Any, Any] | list[Any] = (
                {} if isinstance(event, yaml.MappingStartEvent) else []
            )
            self.stack.append(_Collection(empty, path, event.anchor, line))

    def key(self, parent: _Collection, event: yaml.ScalarEvent, line: int) -> None:
        """A mapping's key: a plain name, and not one the mapping already has."""
        text = event.value
        first = parent.keys.get(text)
        if first is not None and text != "<<":
            path = f"{parent.path}.{text}" if parent.path else text
            raise self.fail(
                event,
                f"{path}: a second '{text}' (the first is on line {first}); each key appears "
                "once in a mapping",
            )
        parent.keys[text] = parent.key_line = line
        parent.key = text  # a key is a name: 'true:' or '1:' is the text, not a value
        parent.has_key = True

    def path(self, parent: _Collection | None) -> str:
        """The path of the value about to be read ('' for the document itself)."""
        if parent is None:
            return ""
        if isinstance(parent.value, list):
            return f"{parent.path}[{len(parent.value)}]"
        key = str(parent.key)
        return f"{parent.path}.{key}" if parent.path else key

    def count(self, event: yaml.Event, values: int) -> None:
        self.total += values
        if self.total > MAX_VALUES:
            what = f"*{event.anchor}" if isinstance(event, yaml.AliasEvent) else "the file"
            raise self.fail(
                event,
                f"{what} expands the file to more than {MAX_VALUES} values (a 'billion laughs' "
                "file?); write repeated parts out, or alias less",
            )

    def finish(self, value: Any, values: int, anchor: str | None) -> None:
        """A value is complete: remember its anchor, put it in its parent."""
        if anchor is not None:
            self.anchors[anchor] = (value, values)
        if not self.stack:
            self.document = value
            return
        parent = self.stack[-1]
        parent.values += values
        if isinstance(parent.value, list):
            parent.value.append(value)
        else:
            parent.value[parent.key] = value
            parent.has_key = False


def _merge(mapping: dict[Any, Any], line: int, reader: _Reader) -> None:
    """YAML merge keys ('<<: *defaults'): the keys written in the mapping win."""
    merged = mapping.pop("<<", None)
    if merged is None:
        return
    sources = merged if isinstance(merged, list) else [merged]
    for source in sources:
        if not isinstance(source, dict):
            raise ProtocolError(f"{reader.name}:{line}: '<<' merges a mapping, or a list of them")
        for key, value in source.items():
            mapping.setdefault(key, value)
