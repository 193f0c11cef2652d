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
