"""The Plan page's tables as plain rows: no Streamlit here, so they are tested without the app.

Every cell of a column holds one type (text in the "Fits on" table): a column that mixes numbers and
text makes Streamlit's Arrow conversion log a traceback on each render.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alignplan.formatting import gib1


def fits_cell(detail: Mapping[str, int] | None, export_only: bool = False) -> str:
    """The fewest GPUs of one type for one method, with the sharding that count needs:
    "1 (no sharding)", "2 (ZeRO-3)", "2 (ZeRO-3, export only)" (a method our runner trains unsharded:
    the count holds for the verl/OpenRLHF export), "no fit"."""
    if detail is None:
        return "no fit"
    count, zero = int(detail["count"]), int(detail["zero"])
    if zero == 0:
        return f"{count} (no sharding)"
    return f"{count} (ZeRO-{zero}{', export only' if export_only else ''})"


def fits_rows(plans: Mapping[str, Any], gpus: Mapping[str, Mapping[str, Any]],
              unsharded: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """One row per GPU type: its usable memory (the verdict's figure) and, per method, fits_cell of the
    plan's min_gpus_detail. `unsharded`: methods our runner cannot shard (the profiles' runner_unsharded)."""
    rows = []
    for gpu_id, spec in gpus.items():
        row = {"GPU": gpu_id, "usable memory": gib1(spec["usable_bytes"])}
        for method, plan in plans.items():
            detail = plan.min_gpus_detail.get(gpu_id)
            row[method] = fits_cell(detail, export_only=bool(unsharded and method in unsharded))
        rows.append(row)
    return rows
