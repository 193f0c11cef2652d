"""Named presets of the Launch form: the form's field values saved as runs/presets/<name>.yaml and
set back into the form. Only plain values are kept (text, numbers, choices), never an uploaded file's
bytes, the running run or one-shot hand-overs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
# form state that is not a field value: the live run, the advice's one-shot hand-over, uploads, buttons
_SKIP = ("launch_run_id", "launch_prefill", "launch_banner", "launch_upload", "launch_go", "launch_override",
         "launch_preset", "launch_stop", "launch_new", "launch_open_runs", "launch_monitor")
_PLAIN = (str, int, float, bool, type(None))


class PresetError(ValueError):
    pass


def presets_dir() -> Path:
    from runners.paths import runs_root

    return runs_root() / "presets"


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME_RE.match(name) or ".." in name:
        raise PresetError(f"Preset name {name!r}: use 1-64 letters, digits, spaces, '.', '_' or '-', "
                          "starting with a letter or digit.")
    return name


def form_values(state: Mapping[str, Any]) -> dict[str, Any]:
    """The Launch form's field values in a session state (keys launch_*)."""
    return {k: v for k, v in state.items() if isinstance(k, str) and k.startswith("launch_")
            and not k.startswith(_SKIP) and isinstance(v, _PLAIN)}


def save(name: str, state: Mapping[str, Any]) -> Path:
    name = check_name(name)
    values = form_values(state)
    if not values:
        raise PresetError("Nothing to save: the form has no values yet.")
    path = presets_dir() / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=True))
    return path


def names() -> list[str]:
    folder = presets_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load(name: str) -> dict[str, Any]:
    path = presets_dir() / f"{check_name(name)}.yaml"
    if not path.is_file():
        raise PresetError(f"Preset {name!r}: not found in {path.parent}.")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise PresetError(f"Preset {name!r} ({path}): not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise PresetError(f"Preset {name!r} ({path}): expected a mapping of form fields.")
    return form_values(values)
