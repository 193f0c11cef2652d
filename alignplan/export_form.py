"""The Launch page's "beyond this machine" section: the planner's placement for a cluster (fewest
nodes that fit, per role), written as an export for accelerate + SLURM, verl or OpenRLHF, and handed
over as a zip. The logic is runners.exports'; this module only lays it out."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import streamlit as st

from alignplan import errors

EXPORT_KEY = "launch_export_result"


def export_zip(folder: Path) -> bytes:
    """The export folder as a zip (paths inside start with the folder's name)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink():
                zf.write(path, Path(folder.name) / path.relative_to(folder))
    return buf.getvalue()


def write_for_page(spec, engine: str, *, nodes: int, gpus_per_node: int, gpu: str,
                   host_ram_gib: float | None) -> dict[str, Any]:
    """Prepare and register the run (launched nowhere, as `alignplan run --export` does), write the
    export into it, and return what the page shows: run id, folder, checks, the zip's bytes."""
    from runners.exports.export import write_export
    from runners.launch.launch import prepare_and_register
    from runners.rundir.prepare import with_absolute_paths

    spec = with_absolute_paths(spec)
    run = prepare_and_register(spec)
    result = write_export(run.path, spec, engine, nodes=nodes, gpus_per_node=gpus_per_node, gpu=gpu,
                          host_ram_gib=host_ram_gib)
    return {"run_id": run.id, "engine": engine, "folder": str(result.folder), "files": result.files,
            "checks": {k: v["status"] for k, v in result.checks.items()}, "notes": result.notes,
            "zip": export_zip(result.folder), "zip_name": f"{run.id}-export-{engine}.zip"}


def export_section(spec, local_fits: bool | None) -> None:
    """Offer the export; open when the run does not fit here or needs more than one node."""
    from planner.hardware import GPUS
    from runners.exports.common import DEFAULT_GPU, engines_for, fewest_nodes

    engines = engines_for(spec.method)
    if not engines:
        return
    gpu_ids = list(GPUS)
    with st.expander("Beyond this machine: export for a cluster (accelerate + SLURM, verl, OpenRLHF)",
                     expanded=local_fits is False):
        c1, c2, c3, c4 = st.columns(4)
        engine = c1.selectbox("Engine", engines, key="export_engine",
                              help="accelerate: TRL under DeepSpeed/FSDP with an sbatch script; verl and "
                                   "OpenRLHF: RL with a vLLM rollout engine on Ray (docs/exports.md)")
        gpu = c2.selectbox("GPU type", gpu_ids, index=gpu_ids.index(DEFAULT_GPU), key="export_gpu")
        per_node = int(c3.number_input("GPUs per node", min_value=1, max_value=16, value=8, step=1,
                                       key="export_gpus_per_node"))
        host = c4.number_input("Host RAM per node, GiB", min_value=0, max_value=65536, value=0, step=64,
                               key="export_host_ram",
                               help="0: the usual server of the GPU type (a DGX H100 has 2,048 GiB); "
                                    "checked against the offloaded states")
        host_ram = float(host) if host else None
        got = errors.attempt("Planning the placement", fewest_nodes, spec, engine, gpus_per_node=per_node, gpu=gpu,
                             host_ram_gib=host_ram)
        if not got.ok:
            return
        nodes, placement = got.value
        if nodes is None:
            st.warning(f"No placement on up to 64 nodes of {per_node} {gpu} fits this run: "
                       + "; ".join(placement.notes[-2:]))
            return
        if nodes > 1:
            st.info(f"This run needs **{nodes} nodes** of {per_node} × {gpu}: alignplan does not train across "
                    f"nodes by itself, it writes the job for {engine}.")
        else:
            st.caption(f"Fits on one node of {per_node} × {gpu}.")
        st.code(placement.summary(), language=None)
        if st.button("Write the export", key="export_write", icon=":material/output:"):
            wrote = errors.attempt("Writing the export", write_for_page, spec, engine, nodes=nodes,
                                   gpus_per_node=per_node, gpu=gpu, host_ram_gib=host_ram)
            if wrote.ok:
                st.session_state[EXPORT_KEY] = wrote.value
        done = st.session_state.get(EXPORT_KEY)
        if done and done["engine"] == engine:
            st.success(f"Export written to `{done['folder']}` (run {done['run_id']}, launched nowhere).")
            st.dataframe([{"check": k, "status": v} for k, v in done["checks"].items()], hide_index=True,
                         key="export_checks")
            st.download_button("Download the export (.zip)", data=done["zip"], file_name=done["zip_name"],
                               mime="application/zip", key="export_download", icon=":material/download:")
