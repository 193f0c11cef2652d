"""A Python function as the judge: 'package.module:function' or 'path/to/file.py:function', called as
f(prompt, first, second) -> 'first' | 'second' | None. runners.judges.rules has deterministic ones."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path

from runners.judges.base import Comparison, Judge, JudgeError, Verdict

ANSWERS = {"first": "first", "second": "second", "a": "first", "b": "second", None: None, "tie": None}


def import_judge_function(target: str) -> Callable[..., object]:
    """The function target names; a JudgeError naming judge.function if it cannot be found."""
    module_name, sep, func_name = target.strip().rpartition(":")
    if not sep:  # package.module.function
        module_name, _, func_name = target.strip().rpartition(".")
    if not module_name or not func_name:
        raise JudgeError(f"judge.function: expected 'package.module:function' or 'file.py:function', got {target!r}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            if not path.is_file():
                raise JudgeError(f"judge.function: {path}: file not found")
            name = f"_alignplan_judge_{abs(hash(str(path)))}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except JudgeError:
        raise
    except Exception as exc:
        raise JudgeError(f"judge.function: cannot import {module_name!r}: {type(exc).__name__}: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise JudgeError(f"judge.function: {module_name!r} has no function {func_name!r}")
    return func


class FunctionJudge(Judge):
    kind = "function"

    def __init__(self, function: str | Callable[..., object]) -> None:
        self.name = function if isinstance(function, str) else getattr(function, "__name__", "function")
        self.function = import_judge_function(function) if isinstance(function, str) else function

    def _compare_one(self, comparison: Comparison) -> Verdict:
        answer = self.function(comparison.prompt, comparison.first, comparison.second)
        key = answer.strip().lower() if isinstance(answer, str) else answer
        if key not in ANSWERS:
            return Verdict(None, raw=str(answer), error="unparseable")
        winner = ANSWERS[key]
        return Verdict(winner, p_first=None if winner is None else float(winner == "first"))
