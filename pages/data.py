"""Data: the data doctor. Look at a preference data set before paying for a run: volume against the
reference text's guidance, token lengths and truncation, biases, duplicates, split leaks, structure."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
import yaml

from alignplan import data_page, errors, sidebar, uploads

sidebar.use_app_navigation()

DEMO = "Bundled demo data"
UPLOAD = "Upload a file"
PATH = "Local path or hub dataset id"


def _data_choice() -> str | None:
    from runners.demo import tiny

    handed = st.session_state.pop(data_page.FROM_LAUNCH, None)
    if handed:  # chosen on the Launch page
        st.session_state["data_source"] = PATH
        st.session_state["data_path"] = handed
    st.session_state.setdefault("data_source", DEMO)
    source = st.radio("Data", (DEMO, UPLOAD, PATH), key="data_source", horizontal=True)
    if source == DEMO:
        path = str(tiny.demo_dataset_path())
        st.caption(f"`{Path(path).name}`, bundled with alignplan.")
        return path
    if source == UPLOAD:
        up = st.file_uploader("Data file (.jsonl, .json, .csv, .parquet)", type=["jsonl", "json", "csv", "parquet"],
                              key="data_upload")
        return str(uploads.save_dataset_upload(up.getvalue(), up.name)) if up is not None else None
    return st.text_input("Path or hub dataset id", key="data_path").strip() or None


def _options() -> dict | None:
    import advisor
    from runners.data import doctor

    c1, c2, c3, c4 = st.columns(4)
    model = c1.text_input("Tokenizer of model (optional)", key="data_model",
                          help="Hub id or local directory: counts tokens with its chat template, as the recipe "
                          "will. Empty: whitespace words estimate the tokens.").strip() or None
    tasks = advisor.framework().questions["task"].values
    task = c2.selectbox("Task", [None, *tasks], key="data_task",
                        format_func=lambda t: "(none: no volume check)" if t is None else tasks[t])
    max_length = c3.number_input("Planned max_length", 8, 1_000_000, 1024, step=64, key="data_max_length")
    eval_fraction = c4.number_input("Held-out share", 0.0, 0.49, 0.0, step=0.05, key="data_eval_fraction")
    with st.expander("Marker words (hedging and confidence) and a reward model"):
        default = yaml.safe_dump(doctor.load_markers(), sort_keys=False, default_flow_style=None, width=100)
        text = st.text_area("Word lists (YAML)", default, height=160, key="data_markers")
        reward = st.text_input("Reward model directory (optional)", key="data_reward").strip() or None
    got = errors.attempt("Marker words", data_page.markers_from_yaml, text)
    if not got.ok:
        return None
    model_plan = sidebar.shared_choices()
    return {"model": model, "task": task, "max_length": int(max_length), "eval_fraction": float(eval_fraction),
            "markers": got.value, "reward_model": reward, "plan_model": model or model_plan[0],
            "gpu": model_plan[1], "gpus": model_plan[2]}


def _show(report: dict) -> None:
    s = report["summary"]
    c = st.columns(5)
    c[0].metric("Pairs", f"{report['pairs']:,}")
    c[1].metric("Distinct prompts", f"{report['volume']['distinct_prompts']:,}")
    c[2].metric("Errors", s["errors"])
    c[3].metric("Warnings", s["warnings"])
    c[4].metric("Suggested max_length", s["suggested_max_length"])
    st.caption(f"Format **{report['format']['name']}** ({report['format']['description']}); "
               f"{'streamed line by line' if report['streamed'] else 'loaded whole'}; {report['seconds']:.1f} s.")
    for note in report["notes"]:
        st.caption(f"Note: {note}")
    st.markdown("#### Findings")
    if not report["findings"]:
        st.success("No findings.", icon=":material/check:")
    for f in report["findings"]:
        show = {"error": st.error, "warning": st.warning, "info": st.info}[f["severity"]]
        show(f"**{f['code']}**: {f['message']}", icon=data_page.SEVERITY_ICON[f["severity"]])
    if report["format"]["name"] not in ("preference", "preference-implicit", "preference-conversational",
                                        "preference-messages", "hh-transcript"):
        return
    v = report["volume"]
    st.markdown("#### Volume")
    g = v.get("guidance")
    st.write(f"{v['pairs']:,} pairs, {v['distinct_prompts']:,} distinct prompts, {v['pairs_per_prompt']['mean']} "
             f"pairs per prompt (max {v['pairs_per_prompt']['max']})."
             + (f" The reference text's range for {v['task']}: {g['min']:,}-{g['max']:,} pairs ({g['source']})." if g else ""))
    ln = report["lengths"]
    st.markdown(f"#### Lengths ({ln['unit']})")
    st.plotly_chart(data_page.length_figure(report), key="data_lengths")
    st.dataframe(pd.DataFrame(data_page.quantile_rows(report)), hide_index=True, key="data_quantiles")
    t = ln["truncation"]
    st.write(f"Over max_length {t['max_length']}: " + ", ".join(
        f"{k} {t['counts'][k]} ({100 * t['shares'][k]:.1f}%)" for k in ("prompt", "chosen", "rejected"))
        + f". Suggested max_length **{ln['suggested_max_length']['suggested']}** (p95 "
        f"{ln['suggested_max_length']['p95']}, p99 {ln['suggested_max_length']['p99']}).")
    plan = report.get("plan")
    if plan and "error" not in plan:
        fits = {True: "fits", False: "does not fit", None: "fit unknown"}[plan["fits"]]
        st.info(f"Memory plan at max_length {plan['seq_len']}: {plan['method']} on `{plan['model']}`, "
                f"{plan['peak_gib_per_gpu']:.1f} GiB per GPU at peak ({plan['peak_phase']}); {fits} on "
                f"{plan['gpus']} x {plan['gpu']}.", icon=":material/memory:")
    elif plan:
        st.caption(f"No memory plan: {plan['error']}")
    b = report["biases"]
    st.markdown("#### Biases")
    rows = [{"what": f"length ({b['length_unit']})", "chosen more": b["length"]["chosen_longer_share"],
             "chosen less": b["length"]["chosen_shorter_share"], "mean difference": b["length"]["mean_difference"]}]
    rows += [{"what": f"{k} markers", "chosen more": m["chosen_more_share"] * m["differ_share"],
              "chosen less": (1 - m["chosen_more_share"]) * m["differ_share"] if m["differ"] else 0.0,
              "mean difference": m["mean_difference"]} for k, m in b["markers"].items()]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="data_biases")
    for col, sk in b["columns"].items():
        st.write(f"{sk['kind'].capitalize()} column `{col}`: " + ", ".join(
            f"{t['value']!r} {100 * t['share']:.0f}%" for t in sk["top"]))
    h = report["hygiene"]
    st.markdown("#### Signal and hygiene")
    st.write(f"{h['identical_pairs']['count']} identical chosen/rejected; empty fields "
             f"{h['empty_fields']['counts'] or 'none'}; {h['exact_duplicates']['count']} exact duplicate pairs; "
             f"{h['near_duplicates']['near_duplicates']} near-duplicates of {h['near_duplicates']['checked']} checked; "
             f"{h['rejected']['distinct']:,} distinct rejected answers (ratio {h['rejected']['distinct_ratio']:.2f}).")
    if h["split_leak"]:
        sl = h["split_leak"]
        st.write(f"Held-out split ({sl['by']}): " + (sl.get("error") or
                 f"{sl['shared_prompts']} of {sl['heldout_prompts']} held-out prompts also in training."))
    st.dataframe(pd.DataFrame(h["rejected"]["top_ngrams"]), hide_index=True, key="data_ngrams")
    stc = report["structure"]
    st.markdown("#### Structure")
    st.write(f"Turns per example: {stc['turns']}; multi-turn pairs {stc['multi_turn_pairs']}; earlier turns "
             f"differ in {stc['early_turns_differ']['count']}.")
    if report.get("reward_model"):
        rm = report["reward_model"]
        st.markdown("#### Reward model")
        st.write(f"`{rm['model']}` agrees with {100 * rm['agreement']:.0f}% of {rm['pairs']} labels. Read these first:")
        st.dataframe(pd.DataFrame(rm["most_disagreed"]), hide_index=True, key="data_disagreed")


def main() -> None:
    st.title("Data")
    st.caption("The data doctor: look at the preference data before paying for a run. Same report as "
               "`alignplan data inspect FILE --json` (docs/data-doctor.md).")
    with st.container(border=True):
        path = _data_choice()
        options = _options()
    if path is None or options is None:
        st.info("Choose a data file to inspect.")
        return
    with st.spinner("Inspecting…"):
        got = errors.attempt("This data set cannot be inspected", data_page.report_for, path, options)
    if got.ok:
        _show(got.value)


errors.run_page(main)
