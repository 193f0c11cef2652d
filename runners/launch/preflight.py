"""Checks `alignplan run` makes before it prepares or launches anything.

The recipe would find the same problems, but only after its imports, a run directory and a registry
row exist; here they are one-line ValueErrors (exit 2) and nothing is created. A dry run skips these
checks: planning for another machine needs neither the data nor the model on this one.

Every check takes a spec whose local paths are already absolute and whose planner alias is already a
hub id (runners.rundir.prepare.with_absolute_paths, which the CLI applies first and prepare() again):
nothing is expanded here a second time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners.rundir.spec import RunSpec, SpecError

LOCAL_HINT = "download it elsewhere and pass a local path"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


class PreflightError(ValueError):
    """A run input that would make the recipe fail."""


def looks_local(path: str) -> bool:
    return path.startswith((".", "/")) or Path(path).exists()


def check_model(spec: RunSpec) -> None:
    """A local model folder must hold config.json and tokenizer files; a hub id needs the hub (or a
    cached copy) when the hub cannot be reached."""
    model = spec.model
    if looks_local(model):
        path = Path(model)
        if not path.exists():
            raise PreflightError(f"--model {model}: directory not found")
        if not path.is_dir():
            raise PreflightError(f"--model {model}: not a directory; give a model folder (config.json, weights, tokenizer)")
        if not (path / "config.json").is_file():
            raise PreflightError(f"--model {model}: no config.json in the folder; give a save_pretrained model folder")
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            raise PreflightError(
                f"--model {model}: no tokenizer files ({', '.join(TOKENIZER_FILES)}) in the folder; "
                "save the tokenizer with the model"
            )
        return
    if _cached(model):
        return
    from planner.models import _hub_reachable

    if not _hub_reachable():
        raise PreflightError(
            f"--model {model}: the Hugging Face hub cannot be reached and the model is not cached; {LOCAL_HINT} "
            "(--model path/to/model-folder)"
        )


def _cached(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an id the hub client rejects is not cached
        return False
    return isinstance(found, str)


def check_dataset(spec: RunSpec):
    """Read and check the data as the recipe will, a row at a time (runners.data.load.scan_rows: the
    recipe's own checks, with only the first rows and an 8-byte digest per prompt kept): empty file,
    bad encoding, a bad JSON line, a wrong type or a misspelt column, a format the method cannot use,
    pairs without a difference, too few prompts for the held-out split. A hub data set needs the hub
    or datasets' local cache. Warnings (some pairs without a difference) go to stderr. Returns the
    first normalized rows as a data set, or None when a reachable hub data set is left for the
    recipe to download."""
    import sys

    from runners.data.load import scan_rows

    path = spec.dataset.path
    if not looks_local(path) and Path(path).suffix.lower() not in (".jsonl", ".json", ".csv", ".parquet", ".txt"):
        from planner.models import _hub_reachable

        if _hub_reachable():
            return None  # downloading a hub data set twice is the recipe's job, not a check's
        # offline: only datasets' local cache can serve it, and reading that is cheap, so check it all
        # (scan_rows says so when it is not cached)
    scan = scan_rows(spec.dataset, spec.method)
    for warning in scan.format.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    from datasets import Dataset

    return Dataset.from_list(scan.rows)


def check_reward(spec: RunSpec, dataset=None) -> None:
    """The reward the online methods will call: a local reward model folder must exist; a reward
    function is imported and called on the first two prompts of the data (a short dummy completion,
    the data columns it asks for) as the trainer will. One line naming reward.function (or
    reward.params, reward.model) and what is wrong: an import error, a wrong signature, a missing
    column, a value that is not one number per completion. With no data here (a hub data set left
    for the recipe), the function is only imported and its signature checked."""
    reward = spec.reward
    if reward is None:
        return
    if reward.model:
        if looks_local(reward.model):
            path = Path(reward.model)
            if not path.is_dir():
                raise PreflightError(f"reward.model: {reward.model}: directory not found"
                                     if not path.exists() else f"reward.model: {reward.model}: not a directory")
            if not (path / "config.json").is_file():
                raise PreflightError(f"reward.model: {reward.model}: no config.json in the folder; give a "
                                     "save_pretrained reward model folder (e.g. an rm run's final model)")
        return
    from runners.rewards.load import check_reward_call, reward_callable

    if dataset is None and looks_local(spec.dataset.path):
        from datasets import Dataset

        from runners.data.load import scan_rows

        try:  # the first rows are enough, read without holding the file
            dataset = Dataset.from_list(scan_rows(spec.dataset, spec.method).rows)
        except (ValueError, OSError):
            dataset = None  # check_dataset reports the data's own problem
    if dataset is None:
        reward_callable(reward)
        return
    check_reward_call(reward, list(dataset.select(range(min(2, len(dataset))))), spec.method,
                      source=Path(spec.dataset.path).name)


def config_class(method: str) -> tuple[type, dict[str, Any]]:
    """The TRL config class the method's recipe builds, and the settings the recipe fixes."""
    from runners.recipes import configs

    try:
        return configs.config_for(method)
    except KeyError:
        raise SpecError(f"method: no recipe for {method!r}") from None


def check_hparams(spec: RunSpec) -> None:
    """spec.hparams keys against the recipe's TRL config (the recipe's own check)."""
    if not spec.hparams:
        return
    from runners.recipes.common import check_hparams as recipe_check

    config_cls, forced = config_class(spec.method)
    recipe_check(dict(spec.hparams), config_cls, forced)
    check_hparam_values(dict(spec.hparams), config_cls, forced)


# Fields that count something: an integer >= 1 where set (0 would fail or do nothing, later).
COUNT_FIELDS = frozenset({
    "per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps", "num_generations",
    "max_length", "max_completion_length", "max_new_tokens", "num_responses", "num_ppo_epochs", "num_mini_batches",
    "dataloader_num_workers_min", "eval_steps", "generation_batch_size", "steps_per_generation",
})
# Number fields that must be > 0 (a zero learning rate trains nothing).
POSITIVE_FIELDS = frozenset({"learning_rate", "temperature"})
# report_to values that need no package, and the module each integration needs.
_REPORT_FREE = ("none", "all")
_REPORT_MODULES = {"tensorboard": ("tensorboard", "tensorboardX"), "comet_ml": ("comet_ml",),
                   "azure_ml": ("azureml",), "dagshub": ("dagshub",), "dvclive": ("dvclive",)}


def _kinds(annotation: Any) -> set[type]:
    """The plain types a dataclass field's annotation allows: {float}, {int, NoneType}, ... (empty = anything)."""
    import types
    import typing

    if isinstance(annotation, str):
        return set()
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        out: set[type] = set()
        for arg in typing.get_args(annotation):
            kinds = _kinds(arg)
            if not kinds:
                return set()
            out |= kinds
        return out
    if annotation is type(None):
        return {type(None)}
    if annotation in (int, float, bool, str):
        return {annotation}
    if origin in (list, tuple):
        return {list}
    if origin is dict:
        return {dict}
    return set()


def check_hparam_values(hparams: dict[str, Any], config_cls: type, forced: dict[str, Any]) -> None:
    """Each hparams value against its config field's type and range, then the config built with them
    (its own validation, which loads nothing), so a bad value is one line naming hparams.<key> and
    what is accepted before any model loads: numbers finite, learning_rate > 0, counts integers >= 1,
    report_to integrations installed."""
    import dataclasses
    import importlib.util
    import math
    import warnings

    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    for key, value in hparams.items():
        field = fields.get(key)
        if field is None:
            continue
        kinds = _kinds(field.type)
        if value is None:
            if kinds and type(None) not in kinds:
                raise SpecError(f"hparams.{key}: expected {_say_kinds(kinds)}, got null")
            continue
        if isinstance(value, str) and (int in kinds or float in kinds) and str not in kinds:
            try:  # YAML 1.1 reads 5e-6 as text; the recipes read such text as the number it is
                value = float(value.strip())
            except ValueError:
                raise SpecError(f"hparams.{key}: expected {_say_kinds(kinds)}, got {value!r}") from None
            if value.is_integer() and int in kinds and float not in kinds:
                value = int(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"hparams.{key}: expected a finite number, got {value!r}")
        if kinds:
            ok = (isinstance(value, bool) and bool in kinds) or (
                not isinstance(value, bool) and (
                    (isinstance(value, int) and (int in kinds or float in kinds))
                    or (isinstance(value, float) and (float in kinds or (int in kinds and value.is_integer())))
                    or (isinstance(value, str) and str in kinds)
                    or (isinstance(value, (list, tuple)) and list in kinds)
                    or (isinstance(value, dict) and dict in kinds)))
            if not ok and isinstance(value, str) and (str in kinds or list in kinds):
                ok = True
            if not ok:
                raise SpecError(f"hparams.{key}: expected {_say_kinds(kinds)}, got {value!r}")
        if key in COUNT_FIELDS and (isinstance(value, bool) or not isinstance(value, int | float)
                                    or not float(value).is_integer() or value < 1):
            raise SpecError(f"hparams.{key}: expected an integer >= 1, got {value!r}")
        if key in POSITIVE_FIELDS and not isinstance(value, bool) and isinstance(value, int | float) and value <= 0:
            raise SpecError(f"hparams.{key}: expected a number > 0, got {value!r}")
    report = hparams.get("report_to")
    for item in [report] if isinstance(report, str) else (report or []):
        name = str(item).strip()
        if name in _REPORT_FREE:
            continue
        modules = _REPORT_MODULES.get(name, (name,))
        if not any(importlib.util.find_spec(m) is not None for m in modules if m.isidentifier()):
            raise SpecError(f"hparams.report_to: {name!r} is not installed here (pip install {modules[0]}); "
                            "accepted: none, or an integration that is installed")
    try:
        neutral = {"output_dir": "/nonexistent/alignplan-check", "report_to": "none", "use_cpu": True,
                   "bf16": False, "fp16": False}  # what the machine decides is not being checked here
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config_cls(**{**hparams, **forced, **{k: v for k, v in neutral.items() if k in fields}})
    except (ValueError, TypeError, AssertionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"hparams: {config_cls.__name__} rejects these settings: {first}") from None


def _say_kinds(kinds: set[type]) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "text", list: "a list",
             dict: "a mapping", type(None): "null"}
    return " or ".join(names[k] for k in (bool, int, float, str, list, dict, type(None)) if k in kinds)


def check_run_inputs(spec: RunSpec) -> None:
    """Fail before preparing or launching on inputs the recipe would reject: a missing or incomplete
    model folder, an unreachable hub, unknown hparams, data that does not load or does not suit the
    method, a reward that cannot be called. A dry run skips this: planning for another machine needs
    no local data."""
    check_model(spec)
    check_hparams(spec)
    dataset = check_dataset(spec)
    check_reward(spec, dataset)
