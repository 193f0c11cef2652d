"""Reading hyper-parameters from a spec's hparams: an integer, a number or a true/false value, or a
SpecError naming hparams.<key> (the values come from YAML, a form or the command line).
"""

from __future__ import annotations

from typing import Any

from planner.parsing import parse_bool
from runners.rundir.spec import SpecError


def hparam_int(hp: dict[str, Any], key: str, default: int | None = None) -> int | None:
    """An integer >= 1 (None when unset -> default); a list, text, fraction or a value below 1 is a
    SpecError naming hparams.<key>. 0 is not "unset": TRL would fail on it later."""
    value = hp.get(key)
    if value is None:
        return default
    bad = SpecError(f"hparams.{key}: expected an integer >= 1, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise bad
    try:
        number = float(value)
    except ValueError:
        raise bad from None
    if not number.is_integer() or number < 1:
        raise bad
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


def hparam_bool(hp: dict[str, Any], key: str, default: bool = False) -> bool:
    """true/false (also yes/no, on/off, 1/0), read by planner.parsing.parse_bool, the one parser every
    package uses; anything else is a SpecError, not a truthy guess."""
    value = hp.get(key)
    if value is None:
        return default
    try:
        return parse_bool(value, f"hparams.{key}")
    except ValueError as exc:
        raise SpecError(str(exc)) from None
