"""Characters that look right and are not: digits of other scripts, look-alike letters, odd spaces.

A value or a name is read only in ASCII (plus the few unit signs the clinic types: µ, the
multiplication sign, °, superscript digits). Anything else is named in the message by its code
point and Unicode name, with the ASCII character it resembles, so a person can see what to
retype.
"""

from __future__ import annotations

# Letters of other scripts that render like an ASCII letter. NFKC covers fullwidth forms and
# ligatures; these are the look-alikes it leaves (Cyrillic, Greek, Latin dotless i).
_LOOKALIKES = str.maketrans(
    dict(
        zip(
            "аеорсухіјѕԁԛԝһАВЕКМНОРСТХІЈЅαεικνορυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧı",
            "aeopcyxijsdqwhABEKMHOPCTXIJSaeikvopuxABEZHIKMNOPTYXi",
            strict=True,
        )
    )
)


_CONTROLS = {0x00: "NULL", 0x09: "CHARACTER TABULATION", 0x0A: "LINE FEED", 0x0D: "CARRIAGE RETURN"}
"""Control characters have no Unicode name, only aliases (which unicodedata cannot give)."""


def describe(char: str) -> str:
    """'U+0430 CYRILLIC SMALL LETTER A'."""
    import unicodedata

    name = unicodedata.name(char, None) or _CONTROLS.get(ord(char))
    if name is None:
        name = "CONTROL CHARACTER" if unicodedata.category(char) == "Cc" else "UNNAMED CHARACTER"
    return f"U+{ord(char):04X} {name}"


def lookalike(char: str) -> str | None:
    """The ASCII character `char` is mistaken for, if any (a Cyrillic a for 'a')."""
    import unicodedata

    folded = unicodedata.normalize("NFKC", char).translate(_LOOKALIKES)
    if folded != char and folded.isascii() and folded.isprintable() and len(folded) == 1:
        return folded
    digit = unicodedata.digit(char, None)
    return str(digit) if digit is not None else None


def ascii_lookalike(text: str) -> str:
    """The text with every look-alike replaced by the ASCII character it resembles."""
    return "".join(lookalike(char) or char if not char.isascii() else char for char in text)


def first_foreign(text: str, allowed: str = "") -> int | None:
    """The index of the first character that is neither ASCII nor in `allowed`."""
    if text.isascii():
        return None
    for index, char in enumerate(text):
        if not char.isascii() and char not in allowed:
            return index
    return None


def foreign(char: str) -> str:
    """What is wrong with a non-ASCII character, for a message: 'U+0661 ARABIC-INDIC DIGIT
    ONE is not a digit dosing reads: type the digits 0-9'."""
    import unicodedata

    named = describe(char)
    if unicodedata.category(char) == "Nd" or unicodedata.digit(char, None) is not None:
        return f"{named} is not a digit dosing reads: type the digits 0-9"
    if char.isspace():
        return f"{named} is not a plain space"
    similar = lookalike(char)
    if similar is not None:
        return f"{named} looks like '{similar}' but is not that character: retype it"
    return f"{named} is not a character dosing reads here"


def shown(text: str, limit: int = 40) -> str:
    """Text for a message: control characters escaped, long text cut (a 128 KB cell)."""
    printable = "".join(
        char
        if char.isprintable() or char == " "
        else f"\\x{ord(char):02x}"
        if ord(char) < 0x100
        else f"\\u{ord(char):04x}"
        for char in text[: limit + 1]
    )
    if len(text) > limit:
        return f"{printable[:limit]}... ({len(text)} characters)"
    return printable
