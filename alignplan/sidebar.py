"""The app's frame around every page: the navigation every page goes through, and the sidebar's
shared choices (model, GPU type, GPU count) that every page reads."""

from __future__ import annotations

from collections.abc import Mapping

import streamlit as st

from alignplan.errors import attempt
from alignplan.formatting import gpu_label
from alignplan.inputs import (
    DEFAULT_GPU,
    DEFAULT_MODEL,
    GPU_KEY,
    GPUS_KEY,
    MAX_GPUS_PER_NODE,
    MODEL_KEY,
    SHARED_DEFAULTS,
)
from alignplan.plan_cache import catalogue_ids, gpu_table
from alignplan.share_link import inputs_from_query

# The link's problems with the sidebar's own parameters (model, gpu, gpus): shown in the sidebar on
# whichever page the link opens, once.
SHARED_LINK_PROBLEMS = "_shared_link_problems"


def use_app_navigation() -> None:
    """Every page calls this first: make the server run app.py (navigation + sidebar) for it.

    A folder named pages/ beside app.py switches Streamlit into its older "pages directory" mode
    until app.py calls st.navigation. A first visit straight to /plan on a fresh server would then
    run pages/plan.py alone, without the sidebar. Turning that mode off and rerunning once sends
    the request through app.py, as every later one goes.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


def seed_shared_choices(params: Mapping[str, str]) -> None:
    """On a session's first run, take the sidebar choices from the link's query parameters."""
    if st.session_state.get("_shared_seeded"):
        return
    st.session_state["_shared_seeded"] = True
    shared = {k: v for k, v in params.items() if k in SHARED_DEFAULTS}
    gpus = attempt("Loading the GPU table", gpu_table)
    # the GPU table checks a link's GPU here, so an unknown one is reported, not replaced unseen
    values, problems = inputs_from_query(shared, gpus=gpus.value if gpus.ok else None)
    for key, value in values.items():
        st.session_state[key] = value
    st.session_state[SHARED_LINK_PROBLEMS] = problems


def sidebar_choices() -> None:
    """Model, GPU type and GPU count: widgets keyed MODEL_KEY, GPU_KEY, GPUS_KEY."""
    ids = attempt("Loading the model catalogue", catalogue_ids)
    gpus = attempt("Loading the GPU table", gpu_table)
    if not (ids.ok and gpus.ok):
        return
    options = list(ids.value)
    current = st.session_state.get(MODEL_KEY, DEFAULT_MODEL)
    if current not in options:  # a hub id or path typed earlier, or from a link
        options.insert(0, current)
    st.session_state.setdefault(MODEL_KEY, DEFAULT_MODEL if DEFAULT_MODEL in options else options[0])
    st.selectbox(
        "Model", options, key=MODEL_KEY, accept_new_options=True,
        help="Search the catalogue, or type a hub id (org/name) or a local config.json path and press Enter.",
    )
    gpu_ids = list(gpus.value)
    st.session_state.setdefault(GPU_KEY, DEFAULT_GPU if DEFAULT_GPU in gpu_ids else gpu_ids[0])
    if st.session_state[GPU_KEY] not in gpu_ids:
        st.session_state[GPU_KEY] = DEFAULT_GPU if DEFAULT_GPU in gpu_ids else gpu_ids[0]
    st.selectbox(
        "GPU type", gpu_ids, key=GPU_KEY, format_func=lambda g: gpu_label(g, gpus.value[g]["usable_bytes"]),
        help="With the memory a program can use on it (what the driver reports), which every fit verdict uses.",
    )
    st.session_state.setdefault(GPUS_KEY, 1)
    st.number_input("GPUs per node", min_value=1, max_value=MAX_GPUS_PER_NODE, step=1, key=GPUS_KEY)
    for problem in st.session_state.pop(SHARED_LINK_PROBLEMS, []):
        st.warning(problem, icon=":material/link_off:")


def shared_choices() -> tuple[str, str, int]:
    """(model, gpu, gpus) as chosen in the sidebar."""
    return (st.session_state.get(MODEL_KEY, DEFAULT_MODEL), st.session_state.get(GPU_KEY, DEFAULT_GPU),
            int(st.session_state.get(GPUS_KEY, 1)))
