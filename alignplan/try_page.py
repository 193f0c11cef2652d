"""The Try it page's logic (pages/try.py lays it out): finished runs, their models loaded once per run and
final model (st.cache_resource), chat answers, trained vs reference answers on held-out prompts, and the
merged export. Generation and loading are runners.tryit's; the export is runners.exports.merged's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

CHAT_TURNS_KEPT = 6  # the newest turns sent back to the model: small models have short contexts


def finished_runs() -> list:
    """The registry's succeeded runs that have a final model, newest first."""
    from alignplan.run_monitor import registry
    from runners.exports.merged import ExportError, final_model
    from runners.rundir.reader import RunDir

    out = []
    for rec in reversed(registry().list(status="succeeded")):
        try:
            final_model(RunDir(Path(rec.run_dir)))
        except ExportError:
            continue  # a pipeline's own record, or a run whose final model was removed
        out.append(rec)
    return out


def final_stamp(run_dir: str) -> int:
    """The final model's modification time (ns): a run trained again loads again."""
    from runners.exports.merged import final_model
    from runners.rundir.reader import RunDir

    final = final_model(RunDir(Path(run_dir)))
    return max(p.stat().st_mtime_ns for p in [final, *final.iterdir()])


@st.cache_resource(max_entries=2, show_spinner=False)
def load(run_dir: str, run_id: str, stamp: int):
    """The run's trained model and reference (runners.tryit.TriedRun), kept across reruns; the key is the
    run and its final model's mtime (run_id and stamp are in the key, not used in the body)."""
    from runners import tryit

    return tryit.load(run_dir, with_reference=True)


@st.cache_data(max_entries=8, show_spinner=False)
def held_out(run_dir: str, k: int) -> tuple[list[Any], str]:
    from runners import tryit

    return tryit.held_out_prompts(run_dir, k)


def chat_answer(tried, history: list[dict[str, str]], max_new_tokens: int) -> str:
    """The trained model's answer to the conversation so far (its newest turns)."""
    from runners import tryit

    turns = history[-CHAT_TURNS_KEPT:]
    prompt = turns if tried.tokenizer.chat_template else tryit.prompt_text(turns) + "\nassistant:"
    return tryit.generate(tried.trained, tried.tokenizer, [prompt], max_new_tokens)[0]


def compare_table(tried, prompts: list[Any], max_new_tokens: int) -> list[dict[str, str]]:
    """[{prompt, trained, reference}], greedy."""
    from runners import tryit

    return tryit.answer(tried, prompts, compare=True, max_new_tokens=max_new_tokens)


def default_export_dir(run_id: str) -> str:
    from runners.paths import runs_root

    return str(runs_root().parent / "exports" / f"{run_id}-merged")


def export(run_dir: str, out_dir: str) -> dict[str, Any]:
    from runners.exports.merged import ExportError, merge_run

    if not out_dir.strip():
        raise ExportError("Output directory: empty; name a new directory for the merged model")
    return merge_run(run_dir, out_dir.strip())
