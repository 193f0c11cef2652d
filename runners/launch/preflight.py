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


def check_dataset(spec: RunSpec) -> None:
    """Load and detect the data as the recipe will (empty file, bad encoding, bad JSON line, a format
    the method cannot use); a hub data set needs the hub or datasets' local cache."""
    from runners.data.load import load_and_normalize

    path = spec.dataset.path
    if not looks_local(path) and Path(path).suffix.lower() not in (".jsonl", ".json", ".csv", ".parquet", ".txt"):
        from planner.models import _hub_reachable

        if _hub_reachable():
            return  # downloading a hub data set twice is the recipe's job, not a check's
        # offline: only datasets' local cache can serve it, and reading that is cheap, so check it all
        # (load_and_normalize says so when it is not cached)
    load_and_normalize(spec.dataset, spec.method)


def config_class(method: str) -> tuple[type, dict[str, Any]]:
    """The TRL config class the method's recipe builds, and the settings the recipe fixes."""
    from runners.recipes import trl_compat

    try:
        return trl_compat.config_for(method)
    except KeyError:
        raise SpecError(f"method: no recipe for {method!r}") from None


def check_hparams(spec: RunSpec) -> None:
    """spec.hparams keys against the recipe's TRL config (the recipe's own check)."""
    if not spec.hparams:
        return
    from runners.recipes.common import check_hparams as recipe_check

    config_cls, forced = config_class(spec.method)
    recipe_check(dict(spec.hparams), config_cls, forced)


def check_run_inputs(spec: RunSpec) -> None:
    """Fail before preparing or launching on inputs the recipe would reject: a missing or incomplete
    model folder, an unreachable hub, unknown hparams, data that does not load or does not suit the
    method. A dry run skips this: planning for another machine needs no local data."""
    check_model(spec)
    check_hparams(spec)
    check_dataset(spec)
