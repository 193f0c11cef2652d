"""Reading hyper-parameters from a spec's hparams: an integer, a number or a true/false value, or a
SpecError naming hparams.<key> (the values come from YAML, a form or the command line).
"""

from __future__ import annotations

from typing import Any

from runners.rundir.spec import SpecError


def hparam_int(hp: dict[str, Any], key: str, default: int | None = None, *, minimum: int = 1) -> int | None:
    """An integer hparam (None when unset -> default); a list, text, fraction or a value below minimum
    is a SpecError naming hparams.<key>. 0 is not "unset": TRL would fail on it later."""
    value = hp.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SpecError(f"hparams.{key}: expected an integer >= {minimum}, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise SpecError(f"hparams.{key}: expected an integer >= {minimum}, got {value!r}") from None
    if not number.is_integer() or number < minimum:
        raise SpecError(f"hparams.{key}: expected an integer >= {minimum}, got {value!r}")
    return int(number)


def hparam_float(hp: dict[str, Any], key: str) -> float | None:
    value = hp.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SpecError(f"hparams.{key}: expected a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise SpecError(f"hparams.{key}: expected a number, got {value!r}") from None


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def hparam_bool(hp: dict[str, Any], key: str, default: bool = False) -> bool:
    """true/false (also yes/no, on/off, 1/0); anything else is a SpecError, not a truthy guess."""
    value = hp.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, (str, int)) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SpecError(f"hparams.{key}: expected true or false, got {value!r}")
