"""Reading values typed by people (query parameters, YAML, forms, prompts): one true/false parser for
every package. Pure Python; the advisor, the runners and the app all read yes/no values through it."""

from __future__ import annotations

from typing import Any

TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def parse_bool(value: Any, field: str) -> bool:
    """A true/false value: a bool as it is; true/false, yes/no, on/off, 1/0 (any case, surrounding
    spaces ignored, also the integers 1 and 0). Anything else is a ValueError naming `field` and the
    accepted values, never a truthy guess."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, int)):
        text = str(value).strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
    raise ValueError(f"{field}: expected true or false (also yes/no, on/off, 1/0), got {value!r}")


# Bidirectional-text overrides reorder what a terminal shows without being control characters.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def printable(text: Any) -> str:
    """``text`` made safe for one line of a terminal: control characters (ESC, newline, carriage
    return, tab, DEL, the C1 range) and bidirectional overrides are written as Python escapes
    (``\\x1b``, ``\\n``, ``\\u202e``), everything else as it is. Model names, run names and paths come
    from users and files; every command that prints them on a terminal passes them through here."""
    text = str(text)
    if all(ch.isprintable() or ch == " " for ch in text) and not _BIDI.intersection(text):
        return text
    out = []
    for ch in text:
        if (ch.isprintable() or ch == " ") and ch not in _BIDI:
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1] if ch in "\n\r\t" else f"\\x{ord(ch):02x}" if ord(ch) < 0x100
                       else f"\\u{ord(ch):04x}")
    return "".join(out)
