"""The Launch page's reward control for ppo/grpo/rloo: a built-in with its parameter fields, a Python
file (a local path or an upload) and its function, or a reward model; and the check that calls the
reward on two prompts of the data (runners.launch.preflight.check_reward), shown before Launch.

The logic is here; pages/launch.py only draws the widgets."""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BUILTIN = "Built-in"
FILE = "Python file"
MODEL = "Reward model"
SOURCES = (BUILTIN, FILE, MODEL)
DEFAULT_BUILTIN = "marker"  # runs on the bundled demo prompts; the tiny model learns it


def builtins() -> dict[str, str]:
    """Built-in name -> one-line summary, in the registry's order."""
    from runners.rewards.builtin import BUILTINS

    return {name: b.summary for name, b in BUILTINS.items()}


def builtin_params(name: str) -> list[dict[str, Any]]:
    """The parameter fields of a built-in: name, kind ('str', 'int', 'bool'), default, help, required."""
    from runners.rewards.builtin import BUILTINS

    return [{"name": p, "kind": spec.kind.__name__, "default": spec.default, "help": spec.help,
             "required": spec.required, "minimum": spec.minimum}
            for p, spec in BUILTINS[name].params.items()]


def initial_choice(preset_reward: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the control starts with: the advisor's preset reward when there is one, else the demo's
    built-in. Keys: source, builtin, params, file, function, model."""
    from runners.rewards.load import is_file_reference, split_reference

    choice = {"source": BUILTIN, "builtin": DEFAULT_BUILTIN, "params": {}, "file": "", "function": "", "model": ""}
    reward = dict(preset_reward or {})
    function = str(reward.get("function") or "")
    if reward.get("model"):
        choice.update(source=MODEL, model=str(reward["model"]))
    elif function.startswith("builtin:") and function[len("builtin:"):] in builtins():
        choice.update(builtin=function[len("builtin:"):], params=dict(reward.get("params") or {}))
    elif is_file_reference(function):
        _, where, name = split_reference(function)
        choice.update(source=FILE, file=where, function=name, params=dict(reward.get("params") or {}))
    elif function:  # a module path: shown as typed, in the file field's place
        choice.update(source=FILE, file=function, params=dict(reward.get("params") or {}))
    return choice


def functions_in_file(path: str | Path) -> list[str]:
    """Top-level function names of a .py file, read without running it ([] when it cannot be read)."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return []
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and not n.name.startswith("_")]


def save_reward_upload(data: bytes, name: str) -> Path:
    """An uploaded reward file goes under <runs root>/uploads/<hash>/<name>.py (prepare copies it into
    the run directory from there). Only the base name of the upload is kept."""
    from alignplan.uploads import upload_name
    from runners.paths import runs_root

    safe = upload_name(name, "rewards.py")
    if not safe.endswith(".py"):
        safe += ".py"
    folder = runs_root() / "uploads" / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    if not path.exists():
        path.write_bytes(data)
    return path


def reward_dict(source: str, *, builtin: str = "", params: Mapping[str, Any] | None = None, file: str = "",
                function: str = "", model: str = "") -> dict[str, Any] | None:
    """The RunSpec `reward` for the control's values; None while a needed field is empty. Parameters
    a built-in does not need to be given (empty fields) are left to its defaults."""
    params = {k: v for k, v in (params or {}).items() if v not in (None, "")}
    if source == MODEL:
        return {"model": model.strip()} if model.strip() else None
    if source == BUILTIN:
        return {"function": f"builtin:{builtin}", "params": params}
    file = file.strip()
    if not file:
        return None
    if file.endswith(".py"):
        if not function.strip():
            return None
        return {"function": f"{file}:{function.strip()}", "params": params}
    return {"function": file, "params": params}  # a module path, 'package.module:function'


def check(spec: Any) -> tuple[bool, str]:
    """(ok, message): the reward imported and called on the first two prompts of the data, as
    `alignplan run` does before launching (runners.launch.preflight.check_reward)."""
    from runners.launch import preflight
    from runners.rewards.load import check_reward_call
    from runners.rundir.prepare import with_absolute_paths

    spec = with_absolute_paths(spec)
    reward = spec.reward
    if reward is None:
        return True, ""
    try:
        if reward.model:
            preflight.check_reward(spec)
            return True, f"Reward model `{reward.model}`: scored by its scalar head."
        from runners.data.load import load_and_normalize

        dataset, _ = load_and_normalize(spec.dataset, spec.method)
        rows = list(dataset.select(range(min(2, len(dataset)))))
        values = check_reward_call(reward, rows, spec.method, source=Path(spec.dataset.path).name)
    except (ValueError, OSError) as exc:
        return False, str(exc)
    shown = ", ".join(f"{v:.3g}" for v in values)
    return True, (f"`{reward.function}` called on the first {len(values)} prompts of the data with a dummy "
                  f"answer: {shown}.")


def parse_params(text: str) -> dict[str, Any]:
    """The file reward's parameters box: a YAML mapping (empty: none)."""
    import yaml

    if not text.strip():
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"reward.params: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(value, dict):
        raise ValueError("reward.params: write a mapping, e.g. {bonus: 0.5}")
    return value
