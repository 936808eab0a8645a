"""Guard expressions: a safe parser (no eval) from text to a plain syntax tree; binding it to
a protocol's names and units is `guard_binding`.

    anc < 1.5 x10^9/L or platelets < 75 x10^9/L or alt > 2.5 * alt_uln
    response == complete and not bleeding
    held_from in [dose_400, dose_300]

Parsing gives a plain syntax tree; no name or unit is looked up here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction

import attrs

from dosing.core.characters import foreign, shown
from dosing.core.errors import GuardSyntaxError
from dosing.core.units import MAX_DIGITS

# ---------------------------------------------------------------------------- syntax


@attrs.frozen
class Literal:
    value: Fraction
    unit: str | None
    text: str
    alternative: Literal | None = None
    """'3.0 mmol/L (265 mg/dL)': the same threshold in a measure that does not convert."""


@attrs.frozen
class Ref:
    name: str


@attrs.frozen
class CountOf:
    """count(condition, condition, ...): how many of the conditions hold."""

    items: tuple[Syntax, ...]
    text: str


@attrs.frozen
class Product:
    """number * name (a multiple of a reference value such as a ULN)."""

    factor: Literal
    name: Ref


Operand = Literal | Ref | Product | CountOf


@attrs.frozen
class Cmp:
    op: str
    left: Operand
    right: Operand
    text: str


@attrs.frozen
class Member:
    subject: Ref
    values: tuple[str, ...]
    negated: bool
    text: str


@attrs.frozen
class Truthy:
    subject: Ref
    text: str


@attrs.frozen
class AllOf:
    items: tuple[Syntax, ...]


@attrs.frozen
class AnyOf:
    items: tuple[Syntax, ...]


@attrs.frozen
class Negation:
    item: Syntax


Syntax = Cmp | Member | Truthy | AllOf | AnyOf | Negation

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<number>[0-9]+(?:\.[0-9]+)?)
        (?:\s*(?P<unit>(?:[xX\u00d7]?10(?:\^|\*\*?)[0-9]+)?(?:/|[A-Za-zµμ°%])[^\s()\[\],<>=!]*))?
    | (?P<op><=|>=|==|!=|<|>|=)
    | (?P<punct>[()\[\],*])
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_SPACE = re.compile(r"\s*")
_KEYWORDS = {"and", "or", "not", "in"}
MAX_DEPTH = 32
"""Parentheses, not and count(...) inside one another: real guards use three or four."""
MAX_CONDITIONS = 1000
"""Comparisons in one guard once its definitions are written out: real guards use a dozen."""


@attrs.frozen
class _Token:
    kind: str
    text: str
    unit: str | None
    at: int
    end: int


_NUMBER_ALONE = re.compile(r"\s*(?P<number>[0-9]+(?:\.[0-9]+)?)")


def _tokenize(source: str) -> list[_Token]:
    """Tokens in one pass over the text (a megabyte of guard once took minutes)."""
    tokens: list[_Token] = []
    position = _SPACE.match(source).end()  # type: ignore[union-attr]
    while position < len(source):
        match = _TOKEN.match(source, position)
        if match is None:
            raise GuardSyntaxError(_unexpected(source, position))
        if match.group("number") and len(match.group("number")) > MAX_DIGITS + 1:
            digits = sum(char.isdigit() for char in match.group("number"))
            raise GuardSyntaxError(
                f"a number of {digits} digits at column {match.start('number') + 1} is not a "
                f"threshold; dosing reads at most {MAX_DIGITS} digits"
            )
        unit = match.group("unit")
        if unit is not None and unit in _KEYWORDS:
            # '2 and ...': the word is a keyword, not a unit; read the number alone.
            match = _NUMBER_ALONE.match(source, position)
            assert match is not None
            unit = None
        kind = "number" if match.group("number") else (match.lastgroup or "")
        text, at = match.group(kind), match.start(kind)
        if kind == "name" and text in _KEYWORDS:
            kind = text
        tokens.append(_Token(kind, text, unit, at, match.end()))
        position = _SPACE.match(source, match.end()).end()  # type: ignore[union-attr]
    return tokens


def _unexpected(source: str, column: int) -> str:
    char = source[column]
    where = f"column {column + 1} in '{shown(source, 200)}'"
    if not char.isascii():
        return f"{foreign(char)} ({where})"
    if re.match(r"\.[0-9]", source[column:]):
        number = re.match(r"\.[0-9]+", source[column:])
        assert number is not None
        return (
            f"'{number.group()}' at column {column + 1} starts with a decimal point; write "
            f"0{number.group()} (in '{shown(source, 200)}')"
        )
    return f"unexpected '{char}' at {where}"


Definitions = Mapping[str, "Syntax | CountOf"]


class _Parser:
    """A recursive-descent parser over the tokens: one method per rule of the grammar (or, and,
    not, comparison, operand), each calling the next tighter one. It stays one class of about
    200 lines because its methods are the grammar read top to bottom; split, the precedence
    would have to be read across files."""

    def __init__(self, source: str, definitions: Definitions) -> None:
        self.source = source
        self.tokens = _tokenize(source)
        self.index = 0
        self.definitions = definitions
        self.depth = 0
        self.conditions = 0
        self._sizes: dict[int, tuple[int, int]] = {}

    def deeper(self, levels: int = 1) -> None:
        """Go `levels` deeper (a parenthesis, a not, a count, a definition's own depth)."""
        self.depth += levels
        if self.depth > MAX_DEPTH:
            token = self.tokens[min(self.index, len(self.tokens) - 1)]
            raise GuardSyntaxError(
                f"the guard nests more than {MAX_DEPTH} levels deep (parentheses, not, count) at "
                f"column {token.at + 1}; write it more simply"
            )

    def counted(self, conditions: int) -> None:
        self.conditions += conditions
        if self.conditions > MAX_CONDITIONS:
            raise GuardSyntaxError(
                f"the guard has more than {MAX_CONDITIONS} conditions once its definitions are "
                "written out; split it into simpler rules"
            )

    def inline(self, defined: Syntax | CountOf) -> None:
        """Account for a definition written out here: its conditions and its depth."""
        conditions, depth = _size(defined, self._sizes)
        self.counted(conditions)
        self.deeper(depth)
        self.depth -= depth

    def fail(self, expected: str) -> GuardSyntaxError:
        if self.index < len(self.tokens):
            token = self.tokens[self.index]
            found = f"'{shown(token.text or token.kind)}' at column {token.at + 1}"
        else:
            found = "the end"
        return GuardSyntaxError(
            f"expected {expected} but found {found} in '{shown(self.source, 200)}'"
        )

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, kind: str, text: str | None = None) -> _Token | None:
        token = self.peek()
        if token is not None and token.kind == kind and (text is None or token.text == text):
            self.index += 1
            return token
        return None

    def parse(self) -> Syntax:
        if not self.tokens:
            raise GuardSyntaxError("the guard is empty")
        tree = self.either()
        if self.peek() is not None:
            raise self.fail("'and', 'or' or the end")
        return tree

    def either(self) -> Syntax:
        items = [self.both()]
        while self.take("or"):
            items.append(self.both())
        return items[0] if len(items) == 1 else AnyOf(tuple(items))

    def both(self) -> Syntax:
        items = [self.unary()]
        while self.take("and"):
            items.append(self.unary())
        return items[0] if len(items) == 1 else AllOf(tuple(items))

    def unary(self) -> Syntax:
        if self.take("not"):
            self.deeper()
            negated = Negation(self.unary())
            self.depth -= 1
            return negated
        if self.take("punct", "("):
            self.deeper()
            inner = self.either()
            if not self.take("punct", ")"):
                raise self.fail("')'")
            self.depth -= 1
            return inner
        return self.condition()

    def condition(self) -> Syntax:
        start = self.peek()
        left = self.operand()
        token = self.peek()
        if token is not None and token.kind == "op":
            self.index += 1
            right = self.operand()
            op = "==" if token.text == "=" else token.text
            self.counted(1)
            return Cmp(op, left, right, self._text_from(start))
        negated = token is not None and token.kind == "not"
        if (
            negated
            and self.index + 1 < len(self.tokens)
            and self.tokens[self.index + 1].kind == "in"
        ):
            self.index += 1
        if self.take("in"):
            if not isinstance(left, Ref):
                raise self.fail("a name before 'in'")
            self.counted(1)
            return Member(left, self.word_list(), negated, self._text_from(start))
        if isinstance(left, Ref):
            defined = self.definitions.get(left.name)
            if defined is not None and not isinstance(defined, CountOf):
                self.inline(defined)
                return defined
            self.counted(1)
            return Truthy(left, left.name)
        raise self.fail("a comparison (<, <=, >, >=, ==, !=) after the number")

    def word_list(self) -> tuple[str, ...]:
        if not self.take("punct", "["):
            raise self.fail("'[' after 'in'")
        words = []
        while True:
            token = self.take("name") or self.take("number")
            if token is None:
                raise self.fail("a value in the list")
            words.append(token.text)
            if self.take("punct", "]"):
                return tuple(words)
            if not self.take("punct", ","):
                raise self.fail("',' or ']'")

    def operand(self) -> Operand:
        token = self.peek()
        if token is None:
            raise self.fail("a name or a number")
        if token.kind == "number":
            self.index += 1
            literal = Literal(Fraction(token.text), token.unit, self._text_of(token))
            if literal.unit is not None and self._alternative_follows():
                self.index += 1  # '('
                other = self.tokens[self.index]
                self.index += 2  # the number, ')'
                alternative = Literal(Fraction(other.text), other.unit, self._text_of(other))
                return attrs.evolve(literal, alternative=alternative)
            if literal.unit is None and self.take("punct", "*"):
                name = self.take("name")
                if name is None:
                    raise self.fail("a name after '*'")
                return Product(literal, Ref(name.text))
            return literal
        if token.kind == "name" and token.text == "count" and self._next_is("("):
            return self.count()
        if token.kind == "name":
            self.index += 1
            defined = self.definitions.get(token.text)
            if isinstance(defined, CountOf):
                self.inline(defined)
                return attrs.evolve(defined, text=token.text)  # reasons name the definition
            if self.take("punct", "*"):
                number = self.take("number")
                if number is None or number.unit is not None:
                    raise self.fail("a plain number after '*'")
                return Product(Literal(Fraction(number.text), None, number.text), Ref(token.text))
            return Ref(token.text)
        raise self.fail("a name or a number")

    def _alternative_follows(self) -> bool:
        """'(' a number with its unit ')' right after a threshold with a unit."""
        ahead = self.tokens[self.index : self.index + 3]
        return (
            len(ahead) == 3
            and ahead[0].text == "("
            and ahead[1].kind == "number"
            and ahead[1].unit is not None
            and ahead[2].text == ")"
        )

    def _next_is(self, text: str) -> bool:
        following = self.index + 1
        return following < len(self.tokens) and self.tokens[following].text == text

    def count(self) -> CountOf:
        start = self.peek()
        self.index += 2  # 'count' '('
        self.deeper()
        items = [self.either()]
        while self.take("punct", ","):
            items.append(self.either())
        if not self.take("punct", ")"):
            raise self.fail("',' or ')' in count(...)")
        self.depth -= 1
        return CountOf(tuple(items), self._text_from(start))

    def _text_of(self, token: _Token) -> str:
        return f"{token.text} {token.unit}" if token.unit else token.text

    def _text_from(self, start: _Token | None) -> str:
        begin = start.at if start else 0
        return " ".join(self.source[begin : self.tokens[self.index - 1].end].split())


def _size(tree: Syntax | CountOf | Operand, known: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(conditions written out, depth) of a parsed tree; shared subtrees are measured once."""
    key = id(tree)
    if key in known:
        return known[key]
    children: tuple[Syntax | CountOf | Operand, ...]
    if isinstance(tree, AllOf | AnyOf | CountOf):
        children = tree.items
    elif isinstance(tree, Negation):
        children = (tree.item,)
    elif isinstance(tree, Cmp):
        children = (tree.left, tree.right)
    else:
        children = ()
    own = 1 if isinstance(tree, Cmp | Member | Truthy) else 0
    parts = [_size(child, known) for child in children]
    level = 1 if isinstance(tree, AllOf | AnyOf | Negation | CountOf) else 0
    size = (
        own + sum(conditions for conditions, _ in parts),
        level + max((depth for _, depth in parts), default=0),
    )
    known[key] = size
    return size


def parse(source: str, definitions: Definitions | None = None) -> Syntax:
    """Parse a guard into a syntax tree; never evaluates code. `definitions` are named
    conditions or counts (from the protocol's definitions) that the guard may use by name."""
    return _Parser(str(source), definitions or {}).parse()


def parse_definition(source: str, definitions: Definitions) -> Syntax | CountOf:
    """A protocol definition: a condition, or a bare count(...)."""
    parser = _Parser(str(source), definitions)
    token = parser.peek()
    if token is not None and token.text == "count" and parser._next_is("("):
        counted = parser.count()
        if parser.peek() is None:
            return counted
        parser.index = parser.depth = parser.conditions = 0
    return parser.parse()
