"""A reward spec made callable, and checked on two samples before a run starts.

`reward.function` takes three forms, all resolved here (the recipes, preflight and the app share it):

    builtin:<name>                  a built-in (runners.rewards.builtin), parameters in reward.params
    package.module:function         a module on the Python path (or package.module.function)
    path/to/file.py:function        a Python file, loaded by its path; prepare() copies it into the run
                                    directory (reward/<file>.py) and spec.yaml points at the copy

Whatever the form, the recipes get `reward_callable(spec)`: a function called with keyword arguments
prompts=, completions= and the data's other columns (TRL's GRPOTrainer/RLOOTrainer also pass
completion_ids, trainer_state, log_extra, log_metric; our PPOTrainer passes the columns only).
reward.params are added as keyword arguments. A function without **kwargs gets only the arguments it
names, so `def score(completions, answer)` works under every trainer.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import math
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from runners.rewards.builtin import check_params, get_builtin, is_builtin

FIELD = "reward.function"
CALL_ARGS = ("prompts", "completions")
# What TRL 1.16's GRPOTrainer/RLOOTrainer pass besides the data columns (grpo_trainer._calculate_rewards).
TRL_EXTRAS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")
RUN_DIR_FOLDER = "reward"  # prepare() copies a reward file here
SAMPLE_COMPLETION = "Sure, here is a short answer."


class RewardError(ValueError):
    """A reward that cannot be used; the message is one line naming reward.function or reward.params.
    (A ValueError: the CLI prints it as one line, exit 2; the recipes re-raise it as a SpecError.)"""


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


# --- parsing the reference ------------------------------------------------------------------------


def split_reference(ref: str) -> tuple[str, str, str]:
    """(kind, where, name): kind 'builtin', 'file' or 'module'."""
    ref = ref.strip()
    if is_builtin(ref):
        return "builtin", "", ref
    where, sep, name = ref.rpartition(":")
    if sep and where.endswith(".py"):
        return "file", where, name
    if not sep:
        if ref.endswith(".py"):
            raise RewardError(f"{FIELD}: {ref!r} names a file but no function; write 'path/to/file.py:function'")
        where, _, name = ref.rpartition(".")
    if not where or not name or not name.isidentifier():
        raise RewardError(
            f"{FIELD}: {ref!r} is not 'builtin:<name>', 'package.module:function' or 'path/to/file.py:function'"
        )
    return "module", where, name


def is_file_reference(ref: str | None) -> bool:
    if not ref:
        return False
    try:
        return split_reference(ref)[0] == "file"
    except RewardError:
        return False


def with_file_path(ref: str, path: str | Path) -> str:
    """The reference with its file part replaced."""
    _, _, name = split_reference(ref)
    return f"{path}:{name}"


# --- loading --------------------------------------------------------------------------------------


def load_file_module(path: str | Path):
    """Import a .py file by its path, without it being on the Python path."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RewardError(f"{FIELD}: {path}: file not found" if not path.exists() else f"{FIELD}: {path}: not a file")
    resolved = path.resolve()
    # Named by path and content: a file edited since (the app loads it again) is loaded again.
    digest = hashlib.sha256(str(resolved).encode() + b"\0" + resolved.read_bytes()).hexdigest()[:12]
    module_name = f"alignplan_reward_{resolved.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise RewardError(f"{FIELD}: {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any error in the user's file is reported as one line
        del sys.modules[module_name]
        hint = ""
        if isinstance(exc, ImportError):
            hint = ("; a reward file is copied into the run directory and loaded alone: import only installed "
                    "packages, or give a module on the Python path ('package.module:function')")
        raise RewardError(f"{FIELD}: cannot load {path} ({type(exc).__name__}: {_one_line(exc)}){hint}") from None
    return module


def import_reward_function(ref: str) -> Callable[..., Any]:
    """The function a non-built-in reference names, as written (no parameters bound)."""
    kind, where, name = split_reference(ref)
    if kind == "builtin":
        return get_builtin(ref).function
    if kind == "file":
        module = load_file_module(where)
        label = where
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise RewardError(f"{FIELD}: cannot import module {where!r} ({_one_line(exc)})") from None
        except Exception as exc:  # noqa: BLE001
            raise RewardError(f"{FIELD}: importing module {where!r} failed ({type(exc).__name__}: "
                              f"{_one_line(exc)})") from None
        label = f"module {where!r}"
    func = getattr(module, name, None)
    if func is None:
        raise RewardError(f"{FIELD}: {label} has no function {name!r}")
    if not callable(func):
        raise RewardError(f"{FIELD}: {label}: {name!r} is not a function")
    if inspect.iscoroutinefunction(func):
        raise RewardError(f"{FIELD}: {ref}: an async function; give a plain (synchronous) function")
    return func


def _parameters(func: Callable[..., Any]) -> tuple[dict[str, inspect.Parameter], bool]:
    """(named keyword-callable parameters, accepts **kwargs)."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return {}, True  # a builtin or C function: call it and see
    named = {p.name: p for p in sig.parameters.values()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    positional_only = [p.name for p in sig.parameters.values()
                       if p.kind is inspect.Parameter.POSITIONAL_ONLY and p.default is inspect.Parameter.empty]
    if positional_only:
        raise RewardError(f"{FIELD}: {getattr(func, '__name__', func)} has positional-only parameters "
                          f"({', '.join(positional_only)}); it is called with keywords: "
                          "f(prompts=..., completions=..., **columns)")
    return named, var_kw


def check_signature(ref: str, func: Callable[..., Any], params: Mapping[str, Any]) -> list[str]:
    """The names the function requires beyond prompts, completions, TRL's extras and reward.params:
    the data columns it asks for. A RewardError when it cannot take completions= at all."""
    named, var_kw = _parameters(func)
    if "completions" not in named and not var_kw:
        shown = ", ".join(named) or "no parameters"
        raise RewardError(
            f"{FIELD}: {ref} takes ({shown}) but is called as f(prompts=..., completions=..., **columns); "
            "give it a 'completions' parameter (and **kwargs for the rest)"
        )
    if not var_kw:
        unknown = sorted(set(params) - set(named))
        if unknown:
            raise RewardError(f"reward.params.{unknown[0]}: {ref} has no parameter {unknown[0]!r} "
                              f"(it takes {', '.join(named)})")
    given = set(CALL_ARGS) | set(TRL_EXTRAS) | set(params)
    return [name for name, p in named.items() if p.default is inspect.Parameter.empty and name not in given]


def reward_callable(reward: Any) -> Callable[..., list[Any]]:
    """spec.reward (a RewardSpec with `function`) as the function the trainers call: parameters bound,
    arguments it does not take dropped, named after the function (TRL logs rewards/<name>/mean)."""
    ref = reward.function
    params = dict(getattr(reward, "params", None) or {})
    if is_builtin(ref):
        try:
            params = check_params(ref, params)
        except ValueError as exc:
            raise RewardError(str(exc)) from None
    func = import_reward_function(ref)
    named, var_kw = _parameters(func)
    check_signature(ref, func, params)

    def call(prompts: list[Any] | None = None, completions: list[Any] | None = None, **kwargs: Any) -> list[Any]:
        given = {"prompts": prompts, "completions": completions, **kwargs, **params}
        if not var_kw:
            given = {k: v for k, v in given.items() if k in named}
        return func(**given)

    functools.update_wrapper(call, func)
    del call.__wrapped__  # inspect.signature(call) must show call's own (prompts, completions, **kwargs)
    call.__name__ = get_builtin(ref).name if is_builtin(ref) else getattr(func, "__name__", "reward")
    return call


# --- the run directory's copy ------------------------------------------------------------------------


def copy_into_run_dir(ref: str, run_dir: str | Path) -> str:
    """Copy a file reward into <run_dir>/reward/ and return the reference to the copy (absolute), so
    the run is self-contained: editing or deleting the original does not change it. A file that is
    not here (a dry run for another machine) is left as it is."""
    _, where, _ = split_reference(ref)
    source = Path(where).expanduser()
    if not source.is_file():
        return ref
    target_dir = Path(run_dir) / RUN_DIR_FOLDER
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / source.name
    if source.resolve() != target.resolve():
        shutil.copy2(source, target)
    return with_file_path(ref, target.resolve())


# --- the check on two samples ------------------------------------------------------------------------


def sample_completion(prompt: Any) -> Any:
    """A short dummy completion in the prompt's shape (a message list for conversational prompts)."""
    if isinstance(prompt, list):
        return [{"role": "assistant", "content": SAMPLE_COMPLETION}]
    return SAMPLE_COMPLETION


def check_reward_call(
    reward: Any,
    rows: list[Mapping[str, Any]],
    method: str,
    source: str = "the data",
) -> list[float]:
    """Import the reward and call it on the first two rows (their prompts, a short dummy completion,
    the data's other columns), as the method's trainer will. Returns the rewards; a RewardError with
    one line naming reward.function (or reward.params) and what is wrong otherwise."""
    ref = reward.function
    call = reward_callable(reward)
    params = dict(getattr(reward, "params", None) or {})
    if is_builtin(ref):
        params = check_params(ref, params)
        needed = get_builtin(ref).columns(params)
    else:
        needed = check_signature(ref, import_reward_function(ref), params)
    samples = [dict(r) for r in rows[:2]]
    if not samples:
        raise RewardError(f"{FIELD}: {source} has no rows to try the reward on")
    columns = [c for c in samples[0] if c not in ("prompt", "completion")]
    missing = [c for c in needed if c not in samples[0]]
    if missing:
        hint = " or set reward.params.column" if is_builtin(ref) and get_builtin(ref).column_param else ""
        raise RewardError(
            f"{FIELD}: {ref} needs the data column {missing[0]!r}, which {source} does not have "
            f"(columns: {', '.join(['prompt', *columns])}); add it{hint}"
        )
    prompts = [s.get("prompt") for s in samples]
    completions = [sample_completion(p) for p in prompts]
    kwargs: dict[str, Any] = {c: [s.get(c) for s in samples] for c in columns}
    if method in ("grpo", "rloo"):  # what TRL passes besides the columns
        kwargs.update(completion_ids=[[0] for _ in samples], trainer_state=None,
                      log_extra=lambda *a, **k: None, log_metric=lambda *a, **k: None)
    try:
        result = call(prompts=prompts, completions=completions, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's function is the message
        raise RewardError(
            f"{FIELD}: {ref} raised {type(exc).__name__}: {_one_line(exc)} when called on the first "
            f"{len(samples)} prompts of {source} with a dummy completion"
        ) from None
    return validate_rewards(ref, result, len(samples))


def validate_rewards(ref: str, result: Any, expected: int) -> list[float]:
    """One finite number per completion, or a RewardError saying what came back instead."""
    if inspect.isawaitable(result):
        if hasattr(result, "close"):
            result.close()
        raise RewardError(f"{FIELD}: {ref} returned an awaitable; give a plain (synchronous) function")
    if isinstance(result, (str, bytes, Mapping)) or not hasattr(result, "__len__") or not hasattr(result, "__iter__"):
        raise RewardError(f"{FIELD}: {ref} returned {type(result).__name__} {_short(result)}; "
                          "return a list with one number per completion")
    values = list(result)
    if len(values) != expected:
        raise RewardError(f"{FIELD}: {ref} returned {len(values)} values for {expected} completions; "
                          "return one number per completion")
    out = []
    for i, value in enumerate(values):
        number = None
        if not isinstance(value, (str, bytes)) and value is not None:
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = None
        if number is None:
            raise RewardError(f"{FIELD}: {ref} returned {type(value).__name__} {_short(value)} for completion "
                              f"{i + 1}; return a number per completion")
        if not math.isfinite(number):
            raise RewardError(f"{FIELD}: {ref} returned {number} for completion {i + 1}; return finite numbers")
        out.append(number)
    return out


def _short(value: Any) -> str:
    text = _one_line(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


def parse_param_items(items: list[str]) -> dict[str, Any]:
    """--reward-param KEY=VALUE items as given (strings: a built-in converts its numbers and booleans,
    and a regular expression is never read as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RewardError(f"--reward-param {item!r}: expected KEY=VALUE, e.g. pattern='^<answer>'")
        out[key.strip()] = value
    return out
