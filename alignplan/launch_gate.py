"""What stops the Launch button: a plan that will not fit, or a model this machine cannot load.

Either makes a launch that fails minutes later with a traceback in the log (an 8B model on a 21 GiB
CPU machine ran 71 s before running out of memory), so the page refuses it unless the user ticks
the labelled override. The messages speak to the page's fields, not to the command line's flags."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

OVERRIDE_LABEL = "Launch anyway: I know this run is expected to fail"


@st.cache_data(show_spinner=False, ttl=60)
def hub_reachable() -> bool:
    """Cached for a minute: the check can take its whole timeout on an offline machine."""
    from planner.models import _hub_reachable

    return _hub_reachable()


def model_problem(model: str) -> str | None:
    """Why this machine cannot load the model named in the Model field, or None when it can."""
    from runners.launch.preflight import TOKENIZER_FILES, _cached, looks_local

    if looks_local(model):
        path = Path(model)
        if not path.is_dir():
            return f"Model: the folder `{model}` does not exist here; give a folder saved with save_pretrained."
        if not (path / "config.json").is_file():
            return f"Model: `{path.name}` has no config.json; give a folder saved with save_pretrained."
        if not any((path / name).is_file() for name in TOKENIZER_FILES):
            return (f"Model: `{path.name}` has no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
                    "save the tokenizer into the same folder.")
        return None
    if _cached(model) or hub_reachable():
        return None
    return (f"Model: the Hugging Face hub cannot be reached and `{model}` is not cached here; choose the "
            "tiny demo model, or give a local model folder.")


def blockers(fits: bool | None, model: str, peak: str | None = None, usable: str | None = None) -> list[str]:
    """Every reason the run is expected to fail here, one sentence each (empty: Launch is enabled)."""
    out: list[str] = []
    if fits is False:
        sizes = f" ({peak} needed, {usable} available)" if peak and usable else ""
        out.append(f"The plan does not fit in memory{sizes}: the run would stop with an out-of-memory error.")
    problem = model_problem(model)
    if problem:
        out.append(problem)
    return out
