"""Constitutions for Constitutional AI: named principles, each a critique request and a revision request.

    constitution = load_constitution(path)        # None: the bundled default (harmless)
    principle = constitution.principles[i]        # Principle(name, critique, revision)

A constitution file is YAML (docs/cai.md):

    name: harmless
    description: optional free text
    principles:
      - name: physical-harm
        critique: "Does the answer ... ?"         # what the critic looks for in the last answer
        revision: "Rewrite the answer so that ..."  # how the reviser rewrites it

Every problem with a file is a ConstitutionError (a ValueError) whose message is one line naming the
file and the field, e.g. ``harmless.yaml: principles[2].critique: missing``. This module imports
nothing else of runners, so any room may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CONSTITUTION = Path(__file__).resolve().parent.parent / "data" / "constitutions" / "harmless.yaml"
"""The bundled default: runners/data/constitutions/harmless.yaml (shipped as package data)."""

TOP_LEVEL_KEYS = ("name", "description", "principles")
PRINCIPLE_KEYS = ("name", "critique", "revision")


class ConstitutionError(ValueError):
    """A constitution file that cannot be used; one line naming the file and the field."""


@dataclass(frozen=True)
class Principle:
    """One principle: `critique` asks what is wrong with an answer, `revision` asks for a rewrite."""

    name: str
    critique: str
    revision: str


@dataclass(frozen=True)
class Constitution:
    name: str
    principles: tuple[Principle, ...]
    description: str = ""
    source: str = ""  # the file it was read from

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.principles]

    def principle(self, name: str) -> Principle:
        for p in self.principles:
            if p.name == name:
                return p
        raise KeyError(f"{self.name}: no principle {name!r}; principles: {', '.join(self.names)}")


def load_constitution(path: str | Path | None = None) -> Constitution:
    """Read and check a constitution file; None reads the bundled default."""
    file = Path(path).expanduser() if path is not None else DEFAULT_CONSTITUTION
    label = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConstitutionError(f"{label}: constitution file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise ConstitutionError(f"{label}: cannot read the constitution ({type(exc).__name__})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise ConstitutionError(f"{label}: not valid YAML{at}") from None
    return parse_constitution(data, label)


def parse_constitution(data: Any, label: str = "constitution") -> Constitution:
    """Check an already-parsed mapping (label names its source in errors)."""

    def fail(field: str, problem: str) -> ConstitutionError:
        return ConstitutionError(f"{label}: {field}: {problem}")

    if not isinstance(data, dict):
        raise ConstitutionError(f"{label}: expected a mapping with {', '.join(TOP_LEVEL_KEYS)}")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise fail(str(key), f"unknown field; accepted: {', '.join(TOP_LEVEL_KEYS)}")
    name = _text(data, "name", fail, "name")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise fail("description", "expected text")
    items = data.get("principles")
    if items is None:
        raise fail("principles", "missing (a list of {name, critique, revision})")
    if not isinstance(items, list) or not items:
        raise fail("principles", "expected a non-empty list of {name, critique, revision}")
    principles: list[Principle] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"principles[{i}]"
        if not isinstance(item, dict):
            raise fail(where, "expected a mapping with name, critique, revision")
        for key in item:
            if key not in PRINCIPLE_KEYS:
                raise fail(f"{where}.{key}", f"unknown field; accepted: {', '.join(PRINCIPLE_KEYS)}")
        p_name = _text(item, "name", fail, f"{where}.name")
        if p_name in seen:
            raise fail(f"{where}.name", f"{p_name!r} is used by an earlier principle")
        seen.add(p_name)
        principles.append(Principle(
            name=p_name,
            critique=_text(item, "critique", fail, f"{where}.critique"),
            revision=_text(item, "revision", fail, f"{where}.revision"),
        ))
    return Constitution(name=name, principles=tuple(principles), description=description.strip(), source=label)


def _text(mapping: dict, key: str, fail, field: str) -> str:
    if key not in mapping or mapping[key] is None:
        raise fail(field, "missing")
    value = mapping[key]
    if not isinstance(value, str):
        raise fail(field, f"expected text, got {type(value).__name__}")
    value = " ".join(value.split())  # one line: folded YAML and stray newlines alike
    if not value:
        raise fail(field, "empty")
    return value
