"""Advise: the advisor's questions one at a time, the recommendation, and the decision tree."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from alignplan import errors, figures, formatting, inputs, plan_cache, sidebar

sidebar.use_app_navigation()

ANSWERS = "advise_answers"
ERROR = "advise_error"


def _widget_key(question_key: str) -> str:
    return f"advise_q_{question_key}"


def _default(q, answers: dict):
    """The value the answer widget starts on: the earlier answer, else the sidebar's choice for the
    hardware questions, else the question's own default."""
    if answers.get(q.key) is not None:
        return answers[q.key]
    model, gpu, gpus = sidebar.shared_choices()
    return {"model": model, "gpu": gpu, "gpus": gpus}.get(q.kind if q.kind in ("model", "gpu") else q.key,
                                                          q.default)


def _answer_widget(q, answers: dict) -> None:
    key = _widget_key(q.key)
    default = _default(q, answers)
    label = "Your answer"
    if q.kind == "choice":
        options = list(q.values)
        st.radio(label, options, index=options.index(default) if default in options else 0,
                 format_func=q.values.get, key=key)
    elif q.kind == "bool":
        st.radio(label, [True, False], index=0 if default is True else 1,
                 format_func=lambda v: "Yes" if v else "No", key=key, horizontal=True)
    elif q.kind == "int":
        lo = int(q.minimum or 0)
        start = int(default) if isinstance(default, int) and default >= lo else lo
        st.number_input(label, min_value=lo, value=start, step=1, key=key)
    elif q.kind == "model":
        options = list(plan_cache.catalogue_ids())
        if default and default not in options:
            options.insert(0, default)
        st.selectbox(label, options, index=options.index(default) if default in options else 0,
                     accept_new_options=True, key=key,
                     help="A catalogue model, a hub id (org/name), or a local config.json path.")
    elif q.kind == "gpu":
        table = plan_cache.gpu_table()
        options = list(table)
        st.selectbox(label, options, index=options.index(default) if default in options else 0, key=key,
                     format_func=lambda g: formatting.gpu_label(g, table[g]["usable_bytes"]))
    else:  # a kind this page does not know yet: free text, validated by the advisor
        st.text_input(label, value="" if default is None else str(default), key=key)


def _on_next(q_key: str) -> None:
    import advisor

    try:
        st.session_state[ANSWERS] = advisor.answer(st.session_state.get(ANSWERS, {}), q_key,
                                                   st.session_state.get(_widget_key(q_key)))
        st.session_state.pop(ERROR, None)
    except ValueError as exc:
        st.session_state[ERROR] = str(exc)


def _on_skip(q_key: str) -> None:
    st.session_state[ANSWERS] = {**st.session_state.get(ANSWERS, {}), q_key: None}
    st.session_state.pop(ERROR, None)


def _on_back() -> None:
    import advisor

    st.session_state[ANSWERS] = advisor.back(st.session_state.get(ANSWERS, {}))
    st.session_state.pop(ERROR, None)


def _on_restart() -> None:
    import advisor

    st.session_state[ANSWERS] = advisor.restart()
    st.session_state.pop(ERROR, None)
    for key in [k for k in st.session_state if str(k).startswith("advise_q_")]:
        del st.session_state[key]


def _ask(step, answers: dict) -> None:
    q = step.question
    with st.container(border=True):
        st.subheader(q.text)
        st.caption(q.explain)
        _answer_widget(q, answers)
        if st.session_state.get(ERROR):
            st.error(st.session_state[ERROR])
        bar = st.container(horizontal=True)
        c1 = c2 = c3 = c4 = bar
        c1.button("Next", type="primary", key="advise_next", on_click=_on_next, args=(q.key,),
                  icon=":material/arrow_forward:")
        if q.optional:
            c2.button("Skip", key="advise_skip", on_click=_on_skip, args=(q.key,),
                      help=f"Use the default ({q.default})" if q.default is not None else "Leave it unanswered")
        c3.button("Back", key="advise_back", on_click=_on_back, disabled=step.answered == 0,
                  icon=":material/arrow_back:")
        c4.button("Restart", key="advise_restart", on_click=_on_restart, icon=":material/restart_alt:")
    if step.outcome:
        st.caption(f"Your answers so far lead to **{step.outcome}**; the last questions check it against "
                   "your model and hardware (optional).")


def _carry(rec, answers: dict) -> None:
    """Put the recommendation into the Plan and Launch pages' state (called before switching page)."""
    hardware = rec.memory or {}
    model = answers.get("model") or hardware.get("model")
    if model:
        st.session_state[inputs.MODEL_KEY] = model
    if hardware.get("gpu"):
        st.session_state[inputs.GPU_KEY] = hardware["gpu"]
    if answers.get("gpus"):
        st.session_state[inputs.GPUS_KEY] = min(inputs.MAX_GPUS_PER_NODE, int(answers["gpus"]))
    import planner

    methods = [m for m in dict.fromkeys([rec.method, rec.runner_up]) if m in planner.METHODS]
    st.session_state["plan_methods"] = methods
    # every input the advice planned with, so Plan shows the same figures (inputs.plan_values)
    for name, value in inputs.plan_values(hardware.get("setup") or {}).items():
        st.session_state["plan_" + name] = value
    st.session_state["_plan_seeded"] = True  # the carried inputs win over Plan's (empty) link
    st.session_state["launch_prefill"] = {
        "from": rec.name, "method": rec.preset.get("method", rec.method), "model": model,
        "hparams": dict(rec.preset.get("hparams") or {}), "reward": rec.preset.get("reward"),
        "note": rec.preset.get("note"), "stage": rec.preset.get("stage"),
    }


def _memory(mem: dict) -> None:
    import advisor

    if not mem:
        st.caption("Answer the model question to check the memory fit on your hardware.")
        return
    if not mem.get("available", True):
        st.caption(mem.get("reason", "No memory check."))
        return
    usable = plan_cache.gpu_table()[mem["gpu"]]["usable_bytes"]
    st.markdown(f"**Memory fit** — {mem['model']} on {mem['gpus']} × {formatting.gpu_label(mem['gpu'], usable)} "
                f"(sequence {mem['setup'].get('seq_len')}, micro-batch {mem['setup'].get('batch_size')}, "
                f"{mem['setup'].get('precision')})")
    rows = [{"": m["role"].replace("_", " "), "method": m["method"], "peak per GPU (GiB)": m["peak_gib"],
             "phase": m["peak_phase"], "fits": "yes" if m["fits"] else "no",
             f"min {mem['gpu']}": m["min_gpus_of_this_type"]} for m in mem["methods"]]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="advise_memory")
    if mem.get("suggestions"):
        fits = all(s["fits"] for s in mem["suggestions"])
        st.warning("The recommendation does not fit as set up. "
                   + ("Changes that make it fit" if fits else "No single change makes it fit; these come closest")
                   + " (each planned with the change applied):\n\n"
                   + "\n".join(f"- {advisor.fix_line(s)}" for s in mem["suggestions"]))
    for note in mem.get("notes", []):
        st.caption(note)


def _card(answers: dict) -> None:
    import advisor

    got = errors.attempt("Building the recommendation", advisor.advise, answers)
    if not got.ok:
        return
    rec = got.value
    with st.container(border=True):
        st.subheader(f"Recommended: {rec.name}")
        st.markdown(rec.summary)
        st.markdown("**Why**\n" + "\n".join(f"- {w}" for w in rec.why))
        g = rec.data_guidance or {}
        if g.get("collect") or g.get("notes"):  # GRPO/PPO collect no pairs: their guidance is in the notes
            st.markdown("**Data**" + (f" — {g['collect']}" if g.get("collect") else f" ({g.get('unit', 'data')})"))
            if g.get("source"):
                st.caption(f"Source: {g['source']}")
            for note in g.get("notes", []):
                st.caption(note)
        if rec.caveats:
            st.markdown("**Caveats**\n" + "\n".join(f"- {c['text']}" for c in rec.caveats))
        if rec.alternatives:
            st.markdown("**Alternatives**\n" + "\n".join(
                f"- **{a['name']}**{' (runner-up)' if a.get('runner_up') else ''}: {a['why_not']}"
                for a in rec.alternatives))
        _memory(rec.memory)
        if rec.next_steps:
            st.markdown("**Next steps**\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(rec.next_steps, 1)))
        if rec.preset.get("command"):
            st.code(rec.preset["command"], language="bash")
        if rec.preset.get("note"):
            st.info(rec.preset["note"])
        bar = st.container(horizontal=True)
        c1 = c2 = c3 = bar
        if c1.button("Plan it", type="primary", key="advise_to_plan", icon=":material/stacked_bar_chart:",
                     on_click=_carry, args=(rec, answers)):
            st.switch_page("pages/plan.py")
        if c2.button("Launch it", key="advise_to_launch", icon=":material/rocket_launch:",
                     on_click=_carry, args=(rec, answers)):
            st.switch_page("pages/launch.py")
        c3.button("Back", key="advise_back_done", on_click=_on_back, icon=":material/arrow_back:")
        bar.button("Start over", key="advise_restart_done", on_click=_on_restart, icon=":material/restart_alt:")


def _tree(answers: dict) -> None:
    import advisor

    got = errors.attempt("Drawing the decision tree", advisor.tree_graph, answers)
    if not got.ok:
        return
    g = got.value
    fw = advisor.framework()
    nodes = []
    for n in g["nodes"]:
        if n["kind"] == "outcome":
            nodes.append({"id": n["id"], "label": n["id"], "hover": n["label"], "kind": "outcome"})
        else:
            q = fw.questions.get(n.get("question"))
            answer = f" → {q.label(n['answer'])}" if q is not None and n.get("answer") is not None else ""
            nodes.append({"id": n["id"], "label": n.get("question") or n["id"], "hover": n["label"] + answer,
                          "kind": "question"})
    edges = [{"source": e["source"], "target": e["target"], "label": e.get("label", "")} for e in g["edges"]]
    path = list(g["path"])
    st.plotly_chart(figures.decision_tree_figure(nodes, edges, path), key="advise_tree")
    st.caption("Circles are questions, squares are methods; your path is highlighted. Hover for the full text.")


def main() -> None:
    import advisor

    st.title("Choose the method")
    st.caption("A few questions about your reward signal, task, annotators, data and hardware; the answer "
               "follows the decision framework of the reference text, with its reasons and caveats.")
    answers = st.session_state.setdefault(ANSWERS, {})
    got = errors.attempt("Reading the questionnaire", advisor.step, answers)
    if not got.ok:
        st.button("Restart", on_click=_on_restart, key="advise_restart_broken")
        return
    step = got.value
    left, right = st.columns([5, 4], gap="large")
    with left:
        if step.done:
            st.progress(1.0, text=f"Done: {step.answered} questions answered")
            _card(answers)
        else:
            st.progress(step.fraction, text=f"Question {step.answered + 1} of up to {step.expected}")
            _ask(step, answers)
    with right:
        st.markdown("**Decision tree**")
        _tree(answers)


errors.run_page(main)
