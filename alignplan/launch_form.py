"""The Launch page's form: its hyper-parameter defaults (TRL's, the tiny demo model's, the advice's
preset), the tiny demo model, the data preview and the devices found."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st

from runners.recipes.defaults import method_defaults

# The Launch page's choices (session-state values: presets save them, tests set them)
RUN_KEY = "launch_run_id"
TINY = "Tiny demo model"
OTHER = "Hub id or local model directory"
DEMO_DATA = "Bundled demo data"
UPLOAD = "Upload a file"
PATH = "Local path or hub dataset id"
NO_DATA = "None"

# TRL 1.16's defaults for the fields the Launch form shows, per recipe method, with the method's published
# defaults where the recipe sets others (runners.recipes.defaults: SimPO's beta). Kept here so the page
# opens without importing TRL (seconds); tests/app/test_app_helpers.py checks them against TRL's classes.
_PREF = {"learning_rate": 1e-6, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
         "max_length": 1024, "beta": 0.1}
_ONLINE = {"learning_rate": 1e-6, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
           "max_completion_length": 512}
TRL_DEFAULTS: dict[str, dict[str, Any]] = {
    "sft": {"learning_rate": 2e-5, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
            "max_length": 1024},
    "rm": {"learning_rate": 1e-4, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
           "max_length": 1024},
    "dpo": dict(_PREF),
    "ipo": dict(_PREF),
    "kto": dict(_PREF),
    "orpo": dict(_PREF),
    "simpo": {**_PREF, **{k: v for k, v in method_defaults("simpo").items() if k in _PREF}},
    "grpo": {**_ONLINE, "beta": 0.0, "num_generations": 8},
    "rloo": {**_ONLINE, "beta": 0.05, "num_generations": 2},
    # ours (TRL 1.16 has no PPO): runners/rl/ppo_config.py PPOConfig's defaults
    "ppo": {"learning_rate": 3e-6, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
            "kl_coef": 0.05, "response_length": 53},
}


TINY_KEEPS = frozenset({"learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
                        "lr_scheduler_type", "warmup_steps", "max_completion_length", "num_generations",
                        "response_length"})


def form_hparams(method: str, tiny: bool, preset: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values of the form's hyper-parameter fields, extra hparams for the free-form box) for a method.

    TRL's defaults; then the tiny demo model's settings when it is the model (TRL's defaults are tuned
    for billion-parameter models); then what the advisor's preset sets, except, for the tiny model,
    the settings of scale in TINY_KEEPS."""
    fields = dict(TRL_DEFAULTS.get(method, TRL_DEFAULTS["dpo"]))
    extras: dict[str, Any] = {}
    if tiny:
        from runners.demo import tiny as tiny_model

        online = tiny_model.DEMO_ONLINE_HPARAMS if "num_generations" in fields else {}
        ppo = tiny_model.DEMO_RLHF_HPARAMS["ppo"] if "kl_coef" in fields else {}  # the RLHF demo's PPO stage
        for key, value in {**tiny_model.DEMO_HPARAMS, **online, **ppo}.items():
            if key in fields:
                fields[key] = value
            elif key in ("lr_scheduler_type", "warmup_steps") or key in ppo:
                extras[key] = value
    for key, value in (preset or {}).items():
        if tiny and key in TINY_KEEPS:
            continue  # a randomly initialised 2-layer model needs the demo's step size to learn at all
        if key in fields:
            fields[key] = value
        else:
            extras[key] = value
    return fields, extras


def ensure_tiny_model() -> Path:
    """Build the tiny demo model once, in a child process (keeps torch out of the app's process)."""
    import subprocess
    import sys

    from runners.demo.tiny import default_tiny_model_dir, is_built
    from runners.paths import runs_root

    out = default_tiny_model_dir()
    if is_built(out):
        return out
    log = runs_root() / "tiny-model-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        code = subprocess.call([sys.executable, "-m", "runners.demo.tiny", str(out)], stdout=fh,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                               cwd=str(Path(__file__).resolve().parent.parent))
    if code != 0 or not is_built(out):
        raise RuntimeError(f"building the tiny demo model into {out} failed (exit {code}); see {log}")
    return out


COLUMNS_LABEL = "Rename columns"


def parse_columns(text: str) -> dict[str, str]:
    """The Rename columns field, "question=prompt, answer=completion", as RunSpec's dataset.columns."""
    mapping: dict[str, str] = {}
    for part in (p.strip() for p in text.replace("\n", ",").split(",")):
        if not part:
            continue
        old, sep, new = (x.strip() for x in part.partition("="))
        if not sep or not old or not new:
            raise ValueError(f"{COLUMNS_LABEL}: {part!r} is not old=new; write e.g. question=prompt, answer=completion")
        mapping[old] = new
    return mapping


def page_words(message: str) -> str:
    """A data error as the page says it: the Rename columns field rather than the spec's dataset.columns."""
    import re

    message = re.sub(r"dataset\.columns \{'([^']+)': '([^']+)'\}", rf"the {COLUMNS_LABEL} field: \1=\2", message)
    message = message.replace("dataset.columns, e.g. {'question': 'prompt'}",
                              f"the {COLUMNS_LABEL} field, e.g. question=prompt")
    return message.replace("dataset.columns maps", f"{COLUMNS_LABEL} maps")


@st.cache_data(show_spinner=False, max_entries=64)
def dataset_preview(path: str, stamp: tuple[float, int], method: str, rows: int = 5,
                    columns: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """First rows as read, and the format detected and checked for the method (runners.data).
    stamp (mtime, size) makes an edited file a new cache entry; columns: the renames (old, new).
    Raises DataError for unusable data, worded for the page."""
    from runners.data import load as data

    try:
        dataset, fmt = data.load_and_normalize({"path": path, "columns": dict(columns)}, method)
    except data.DataError as exc:
        raise data.DataError(page_words(str(exc))) from None
    raw, _, _ = data.load_rows(path)
    return {"rows": raw[:rows], "format": fmt.name, "description": fmt.description, "count": fmt.rows,
            "columns": list(dataset.column_names)}


def dataset_preview_as(path: str, shown: str, method: str, columns: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """dataset_preview, with its errors naming the file as the user knows it (an upload's own name,
    not the folder it was saved to)."""
    try:
        return dataset_preview(path, file_stamp(path), method, columns=columns)
    except ValueError as exc:
        raise ValueError(str(exc).replace(path, shown)) from None


def file_stamp(path: str) -> tuple[float, int]:
    try:
        st_ = Path(path).stat()
        return (st_.st_mtime, st_.st_size)
    except OSError:
        return (0.0, 0)



@st.cache_data(show_spinner=False, ttl=30)
def devices_found() -> Any:
    from runners.rundir import devices

    return devices.discover()

