"""Try it: chat with a finished run's model, compare it with its reference on held-out prompts, export it."""

from __future__ import annotations

import streamlit as st

from alignplan import errors, sidebar, try_page

sidebar.use_app_navigation()


def _chat(tried, run_id: str, max_new_tokens: int) -> None:
    key = f"try_chat_{run_id}"
    history = st.session_state.setdefault(key, [])
    conversation = st.container()  # above the input box, which a tab shows where it is called
    question = st.chat_input("Ask the trained model", key="try_chat_input")
    if question:
        history.append({"role": "user", "content": question})
        with st.spinner("Answering…"):
            history.append({"role": "assistant", "content": try_page.chat_answer(tried, history, max_new_tokens)})
    for turn in history:
        with conversation.chat_message(turn["role"]):
            st.markdown(turn["content"].strip() or "*(no text: the model ended at once)*")


def _compare(tried, rec, max_new_tokens: int) -> None:
    k = int(st.number_input("Prompts", 1, 20, 5, key="try_k"))
    prompts, source = try_page.held_out(rec.run_dir, k)
    st.caption(f"{len(prompts)} prompts from the run's {source}; greedy answers. "
               f"Reference: {tried.reference_name}.")
    key = f"try_compare_{rec.id}"
    if st.button("Answer with both models", key="try_compare", icon=":material/compare_arrows:"):
        with st.spinner("Generating…"):
            st.session_state[key] = try_page.compare_table(tried, prompts, max_new_tokens)
    rows = st.session_state.get(key)
    if rows:
        st.dataframe([{"prompt": r["prompt"], "trained": r["trained"], "reference": r["reference"]} for r in rows],
                     hide_index=True, key="try_compare_table")


def _export(rec) -> None:
    st.caption("A LoRA run's adapter is merged into its base model; a full fine-tune is copied. The directory "
               "loads with AutoModelForCausalLM.from_pretrained alone.")
    out = st.text_input("Output directory", try_page.default_export_dir(rec.id), key="try_export_dir")
    if st.button("Merge and export", key="try_export", icon=":material/output:"):
        with st.spinner("Merging…"):
            done = errors.attempt("Exporting the model", try_page.export, rec.run_dir, out)
        if done.ok:
            st.success(f"Exported ({done.value['kind']}, {done.value['dtype']}) to {done.value['out_dir']}")


def main() -> None:
    st.title("Try it")
    st.caption("Chat with a finished run's model, and see it beside the model it started from on prompts it "
               "did not train on.")
    found = errors.attempt("Opening the run registry", try_page.finished_runs)
    if not found.ok:
        return
    records = found.value
    if not records:
        st.info("No finished run yet. Launch one from the Launch page (or `alignplan demo`).")
        return
    ids = [r.id for r in records]
    wanted = st.query_params.get("run")
    if wanted in ids and "try_run" not in st.session_state:
        st.session_state["try_run"] = wanted
    run_id = st.selectbox("Run", ids, key="try_run",
                          format_func=lambda i: f"{i} ({next(r.method for r in records if r.id == i)})")
    rec = next(r for r in records if r.id == run_id)
    max_new_tokens = int(st.number_input("Max new tokens", 1, 1024, 48, key="try_max_new_tokens"))
    with st.spinner("Loading the trained model and its reference…"):
        loaded = errors.attempt("Loading the run's model", try_page.load, rec.run_dir, rec.id,
                                try_page.final_stamp(rec.run_dir))
    if not loaded.ok:
        return
    chat, compare, export = st.tabs(["Chat", "Trained vs reference", "Export"])
    with compare:
        _compare(loaded.value, rec, max_new_tokens)
    with export:
        _export(rec)
    with chat:
        _chat(loaded.value, rec.id, max_new_tokens)


errors.run_page(main)
