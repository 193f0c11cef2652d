"""The spec's reward *function* handed to verl or OpenRLHF: a small Python file each engine imports
by path, calling our reward (``runners.rewards.load.reward_callable``: built-ins with their params,
``module:function`` or a copied file) with the data's answer column.

Each engine calls a function of its own shape:

* verl 0.9 (``reward.custom_reward_function``): ``compute_score(data_source, solution_str,
  ground_truth, extra_info)`` per sample, returning a float.
* OpenRLHF 0.11.2 (``--reward.remote_url <file>.py``): ``reward_func(queries, prompts, labels)``
  where a query is the decoded prompt + response (special tokens kept) and a prompt the
  chat-templated text; it returns ``{"rewards", "scores", "extra_logs"}``, one value per query
  (OpenRLHF's SingleTurnAgentExecutor calls it with one query at a time).

The reward's settings go to ``reward.json`` beside the adapter, so the file itself is fixed text.
The cluster must import ``runners`` (alignplan installed, or the repository on PYTHONPATH): the
export's README line says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runners.rundir.spec import RunSpec

ADAPTER_FILE = "reward_fn.py"
SETTINGS_FILE = "reward.json"

_COMMON = '''"""{engine}: the alignplan run's reward function (written by alignplan; settings in reward.json).
Needs alignplan importable (pip install it, or put its repository on PYTHONPATH)."""

import json
import os
from types import SimpleNamespace

_HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_HERE, "reward.json"), encoding="utf-8") as _f:
    SETTINGS = json.load(_f)
_REWARD = None


def _reward():
    global _REWARD
    if _REWARD is None:
        from runners.rewards.load import reward_callable

        _REWARD = reward_callable(SimpleNamespace(function=SETTINGS["function"], params=SETTINGS["params"]))
    return _REWARD


def score(prompts, completions, labels):
    """Our reward on text prompts/completions, the label passed as the data's answer column."""
    columns = {{SETTINGS["label_column"]: list(labels)}} if SETTINGS["label_column"] else {{}}
    return [float(x) for x in _reward()(prompts=list(prompts), completions=list(completions), **columns)]
'''

_VERL = '''

def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    prompt = (extra_info or {}).get("prompt_text", "")
    return score([prompt], [solution_str], [ground_truth])[0]
'''

_OPENRLHF = '''

def _completion(query, prompt):
    text = query[len(prompt):] if query.startswith(prompt) else query
    stripped = True
    while stripped:  # the end-of-turn tokens the engine decoded with the response
        stripped = False
        for token in SETTINGS["strip_tokens"]:
            if token and text.endswith(token):
                text, stripped = text[: -len(token)], True
    return text


def reward_func(queries, prompts, labels):
    scores = score(prompts, [_completion(q, p) for q, p in zip(queries, prompts)],
                   [("" if x is None else x) for x in labels])
    value = scores[0] if len(scores) == 1 else scores
    return {"rewards": value, "scores": value, "extra_logs": {}}
'''


def label_column(spec: RunSpec) -> str | None:
    """The data column the reward reads as its answer (a built-in's column parameter, else `answer`
    when the reward takes one), or None."""
    from runners.rewards.builtin import get_builtin, is_builtin

    ref = spec.reward.function if spec.reward else None
    if not ref:
        return None
    if is_builtin(ref):
        cols = get_builtin(ref).columns(spec.reward.params or {})
        return cols[0] if cols else None
    return "answer"


def special_tokens(model: str) -> list[str]:
    """The tokenizer's special tokens (longest first), when the model is a local folder; else none."""
    if not Path(model).is_dir():
        return []
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    return sorted({t for t in tok.all_special_tokens if t}, key=len, reverse=True)


def write_reward_adapter(spec: RunSpec, folder: Path, engine: str) -> list[str]:
    """reward_fn.py + reward.json in ``folder`` for ``engine`` (verl | openrlhf); the files written."""
    if engine not in ("verl", "openrlhf"):
        raise ValueError(f"engine: {engine!r}; accepted: verl, openrlhf")
    settings: dict[str, Any] = {"function": spec.reward.function, "params": dict(spec.reward.params or {}),
                                "label_column": label_column(spec),
                                "strip_tokens": special_tokens(spec.model) if engine == "openrlhf" else []}
    (folder / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    body = _COMMON.format(engine={"verl": "verl 0.9 custom_reward_function",
                                  "openrlhf": "OpenRLHF 0.11.2 --reward.remote_url"}[engine])
    body += _VERL if engine == "verl" else _OPENRLHF
    (folder / ADAPTER_FILE).write_text(body, encoding="utf-8")
    return [ADAPTER_FILE, SETTINGS_FILE]
