"""The planner's answers, cached for the app's reruns (st.cache_data): plans, the model catalogue,
the GPU table and the method ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import streamlit as st


@st.cache_data(show_spinner=False, max_entries=512)
def compare_plans(request: tuple[tuple[str, Any], ...], methods: tuple[str, ...]) -> dict[str, Any]:
    """planner.compare for a hashable request; Plan objects, one per method."""
    import planner

    req = planner.PlanRequest(method=methods[0], **dict(request))
    return planner.compare(req, list(methods))


def plans_for(kwargs: Mapping[str, Any], methods: list[str]) -> dict[str, Any]:
    return compare_plans(tuple(sorted(kwargs.items())), tuple(methods))


@st.cache_data(show_spinner=False)
def catalogue_ids() -> list[str]:
    import planner

    return [m.id for m in planner.catalogue()]


@st.cache_data(show_spinner=False)
def gpu_table() -> dict[str, dict[str, Any]]:
    """gpu id -> {name, memory_bytes, usable_bytes}."""
    import planner

    return {gid: {"name": g.name, "memory_bytes": g.memory_bytes, "usable_bytes": g.usable_bytes}
            for gid, g in planner.GPUS.items()}


@st.cache_data(show_spinner=False)
def method_ids() -> list[str]:
    import planner

    return list(planner.METHODS)
