"""The Launch page's pipeline form (rlhf: SFT -> reward model -> PPO; rlaif: generate -> judge -> DPO; cai:
critique/revise -> SFT -> generate -> judge -> DPO): its inputs, every stage's plan, the refusal of a plan
that will not fit, then Launch. The widgets are here, the logic in alignplan/pipeline_form.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
import yaml

from alignplan import errors, formatting, launch_form, launch_gate, pipeline_form, uploads
from alignplan.launch_form import DEMO_DATA, NO_DATA, PATH, RUN_KEY, TINY, UPLOAD


def _pipeline_dataset(method: str, name: str, optional: str | None) -> tuple[str | None, bool]:
    """One data set of the pipeline: (path, usable). optional: the label of leaving it out."""
    from runners.demo import tiny

    label, demo_kind, stage_method = pipeline_form.PIPELINE_DATA[method][name]
    key = f"launch_pl_{name}" if method == "rlhf" else f"launch_pl_{method}_{name}"
    options = (DEMO_DATA, UPLOAD, PATH) + ((NO_DATA,) if optional else ())
    st.session_state.setdefault(f"{key}_source", NO_DATA if optional else DEMO_DATA)
    source = st.radio(label, options, key=f"{key}_source", horizontal=True,
                      format_func=lambda o: optional if o == NO_DATA and optional else o)
    path: str | None = None
    if source == NO_DATA:
        return None, True
    if source == DEMO_DATA:
        path = str(tiny.demo_data_paths()[demo_kind])
    elif source == UPLOAD:
        up = st.file_uploader(f"{label} file", type=["jsonl", "json", "csv", "parquet"], key=f"{key}_upload")
        if up is not None:
            path = str(uploads.save_dataset_upload(up.getvalue(), up.name))
    else:
        path = st.text_input(f"{label}: path or hub dataset id", key=f"{key}_path").strip() or None
    if path is None:
        st.info(f"{label}: choose a data file to continue.")
        return None, False
    shown = uploads.upload_name(up.name, "data.jsonl") if source == UPLOAD else path  # an upload by its own name
    got = errors.attempt(f"{label} cannot be used", launch_form.dataset_preview_as, path, shown, stage_method)
    if got.ok:
        prev = got.value
        st.caption(f"`{Path(path).name}`: format **{prev['format']}**, {prev['count']} rows "
                   f"({stage_method} reads {', '.join(prev['columns'])}).")
    return path, got.ok


def _pipeline_inputs(method: str) -> tuple[dict[str, str | None], dict[str, str | None], bool]:
    """(data sets, given models, usable): a given model skips its stage and the data only it reads."""
    d = pipeline_form.definition(method)
    given: dict[str, str | None] = {}
    if d.given_help:
        st.markdown("**Models you already have** (each skips its stage)")
        cols = st.columns(len(d.given_help))
        for col, (stage, help_text) in zip(cols, d.given_help.items(), strict=False):
            label = {"sft": "SFT model", "rm": "Reward model"}.get(stage, f"{stage} model")
            if method == "cai" and stage == "sft":
                label = "SL-CAI model"
            key = f"launch_pl_given_{stage}" if method == "rlhf" else f"launch_pl_{method}_given_{stage}"
            given[stage] = col.text_input(f"{label} (optional)", key=key,
                                          help=f"Hub id or local directory: {help_text}.").strip() or None
    st.markdown("**Data**")
    data: dict[str, str | None] = {}
    usable = True
    wanted = pipeline_form.needed_inputs(method, given, {})
    for name in d.data:
        if name not in pipeline_form.PIPELINE_DATA[method]:
            continue
        fallback = d.data_fallback.get(name)
        if not wanted.get(name):
            continue
        optional = f"From the {fallback}" if fallback else None
        data[name], ok = _pipeline_dataset(method, name, optional)
        usable = usable and ok
    if not data.get("prompts") and "prompts" in d.data_fallback and not data.get(d.data_fallback["prompts"]):
        fallback = d.data_fallback["prompts"]
        st.caption(f"PPO takes its prompts from the {fallback}: give them too.")
        data[fallback], ok = _pipeline_dataset(method, fallback, None)
        usable = usable and ok
    return data, given, usable


def _pipeline_settings(method: str, tiny: bool) -> dict[str, Any] | None:
    """Per-stage max steps, the PPO stage's main hyper-parameters, other hparams per stage (YAML)."""
    steps, demo = pipeline_form.stage_defaults(tiny, method)
    preset = st.session_state.get("launch_preset") or {}
    preset_hp = (preset.get("hparams") or {}) if preset.get("method") == method else {}
    tag = "tiny" if tiny else "model"
    if method != "rlhf":
        tag = f"{method}_{tag}"
    st.markdown("**Max steps per stage** (-1: one epoch of its data; a generation stage: how many prompts)")
    stages = pipeline_form.step_stages(method)
    cols = st.columns(len(stages))
    max_steps = {s.name: int(col.number_input(f"{s.name} ({s.method})", value=int(steps.get(s.name, -1)), min_value=-1,
                                              step=10, key=f"launch_pl_steps_{s.name}_{tag}"))
                 for col, s in zip(cols, stages, strict=True)}
    if method != "rlhf":
        return _pipeline_more_settings(method, tag, max_steps, demo, preset_hp, preset.get("stage") or "dpo", tiny)
    st.markdown("**PPO stage** (runners/rl/ppo_config.py; the advice's settings when it sent them)")
    ppo_demo = dict(demo.get("ppo") or {})
    cols = st.columns(len(pipeline_form.PPO_FIELDS))
    ppo: dict[str, Any] = {}
    for col, (name, default) in zip(cols, pipeline_form.PPO_FIELDS.items(), strict=True):
        value = ppo_demo.pop(name, default)
        if name in preset_hp and not (tiny and name == "learning_rate"):  # the tiny model keeps the demo's step
            value = preset_hp[name]
        ppo[name] = col.number_input(pipeline_form.PPO_LABELS[name], value=float(value), min_value=0.0,
                                     format="%.2e" if name == "learning_rate" else "%.3f",
                                     key=f"launch_pl_ppo_{name}_{tag}")
    more = {k: dict(v) for k, v in demo.items() if k != "ppo"}
    ppo_more = {**ppo_demo, **{k: v for k, v in preset_hp.items() if k not in pipeline_form.PPO_FIELDS}}
    if ppo_more:
        more["ppo"] = ppo_more
    text = st.text_area("More settings per stage (YAML: stage -> hparams)", key=f"launch_pl_more_{tag}", height=110,
                        value=yaml.safe_dump(more, sort_keys=False) if more else "",
                        help="Any field of the stage's config, e.g. `ppo: {response_length: 64}` or "
                        "`sft: {max_length: 512}`.")
    try:
        extra = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        st.error(f"More settings per stage: not valid YAML ({exc}).")
        return None
    if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
        st.error("More settings per stage: write `stage: {name: value, ...}` for each stage.")
        return None
    hparams = {stage: dict(values) for stage, values in extra.items()}
    hparams["ppo"] = {**hparams.get("ppo", {}), **ppo}
    c1, c2 = st.columns([1, 2])
    precision = c1.selectbox("Precision", ("auto", "bf16-kahan", "bf16", "amp-bf16", "fp32"), key="launch_pl_precision",
                             help="Every stage's; auto: bf16-kahan on a GPU that has bf16, fp32 on a CPU.")
    name = c2.text_input("Pipeline name (optional)", key="launch_pl_name").strip() or None
    return {"max_steps": max_steps, "hparams": hparams, "precision": None if precision == "auto" else precision,
            "name": name}


def _pipeline_more_settings(method: str, tag: str, max_steps: dict[str, int], demo: dict[str, dict[str, Any]],
                            preset_hp: dict[str, Any], preset_stage: str, tiny: bool) -> dict[str, Any] | None:
    """rlaif / cai: each stage's hparams as YAML (the demo's on the tiny model; the advice's for its stage, the
    tiny model keeping the demo's step size), precision, name."""
    more = {k: dict(v) for k, v in demo.items()}
    if preset_hp:
        more[preset_stage] = {**more.get(preset_stage, {}),
                              **{k: v for k, v in preset_hp.items() if not (tiny and k == "learning_rate")}}
    text = st.text_area("Settings per stage (YAML: stage -> hparams)", key=f"launch_pl_more_{tag}", height=140,
                        value=yaml.safe_dump(more, sort_keys=False) if more else "",
                        help="Any field of the stage's config, e.g. `dpo: {beta: 0.1}`, `generate: {num_responses: 4, "
                        "max_new_tokens: 256}`.")
    try:
        extra = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        st.error(f"Settings per stage: not valid YAML ({exc}).")
        return None
    if not isinstance(extra, dict) or not all(isinstance(v, dict) for v in extra.values()):
        st.error("Settings per stage: write `stage: {name: value, ...}` for each stage.")
        return None
    c1, c2 = st.columns([1, 2])
    precision = c1.selectbox("Precision", ("auto", "bf16-kahan", "bf16", "amp-bf16", "fp32"), key="launch_pl_precision",
                             help="Every stage's; auto: bf16-kahan on a GPU that has bf16, fp32 on a CPU.")
    name = c2.text_input("Pipeline name (optional)", key="launch_pl_name").strip() or None
    return {"max_steps": max_steps, "hparams": {k: dict(v) for k, v in extra.items()},
            "precision": None if precision == "auto" else precision, "name": name}


def _judge_section(method: str, tiny: bool) -> dict[str, Any] | None:
    """The labelling stage's judge, cai's constitution, review: {judge, constitution, review}; None while a
    required field is missing (an error says which)."""
    st.markdown("**Judge** (compares two answers to a prompt, in both orders; docs/judges.md)")
    kinds = list(pipeline_form.JUDGE_CHOICES)
    labels = dict(pipeline_form.JUDGE_CHOICES)
    if method == "cai":
        kinds = ["default", *kinds]
        labels["default"] = "The base model, per principle (CAI's default)"
    st.session_state.setdefault(f"launch_pl_{method}_judge_kind", "function" if tiny or method == "rlaif" else "default")
    kind = st.radio("Judge", kinds, key=f"launch_pl_{method}_judge_kind", horizontal=True, format_func=labels.get,
                    label_visibility="collapsed")
    fields: dict[str, Any] = {}
    if kind == "function":
        rules = pipeline_form.rule_judges()
        order = sorted(rules, key=lambda r: (not r.endswith(":prefer_safe_then_shorter"), r))
        fields["function"] = st.selectbox("Rule judge", order, key=f"launch_pl_{method}_judge_function",
                                          format_func=lambda r: r.split(":")[-1], help="runners/judges/rules.py")
        st.caption(rules.get(fields["function"], ""))
    elif kind in ("local", "reward-model"):
        fields["model"] = st.text_input(f"{labels[kind]}: hub id or local directory",
                                        key=f"launch_pl_{method}_judge_{kind}").strip() or None
    elif kind == "endpoint":
        c1, c2, c3 = st.columns(3)
        fields["base_url"] = c1.text_input("Endpoint URL", key=f"launch_pl_{method}_judge_url",
                                           placeholder="http://localhost:8000/v1").strip() or None
        fields["endpoint_model"] = c2.text_input("Model name", key=f"launch_pl_{method}_judge_endpoint_model").strip() or None
        fields["api_key_env"] = c3.text_input(
            "API key: environment variable NAME", key=f"launch_pl_{method}_judge_key_env", placeholder="OPENAI_API_KEY",
            help="The name of the variable that holds the key on this machine; the key itself is never asked for "
            "nor written anywhere. Empty: no key (a local server).").strip() or None
    judge, ok = None, True
    if kind != "default":  # every widget is drawn on every run (a widget left out loses its value)
        got = errors.attempt("The judge is not complete", pipeline_form.judge_spec, kind, **fields)
        judge, ok = (got.value if got.ok else None), got.ok
    constitution = None
    if method == "cai":
        st.markdown("**Constitution** (the principles the model critiques and revises against, and the judge asks about)")
        up = st.file_uploader("Your constitution (YAML, optional)", type=["yaml", "yml"], key="launch_pl_cai_const_upload")
        path = st.text_input("…or its path (optional)", key="launch_pl_cai_const_path").strip() or None
        if up is not None:
            path = str(uploads.save_dataset_upload(up.getvalue(), up.name))
        got = errors.attempt("This constitution cannot be used", pipeline_form.constitution_rows, path)
        if got.ok:
            name, rows = got.value
            st.caption(f"**{name}**: {len(rows)} principles" + ("" if path else " (the bundled constitution)"))
            st.dataframe(pd.DataFrame(rows), hide_index=True, key="launch_pl_cai_principles")
            constitution = path
        ok = ok and got.ok
    review = st.checkbox("Pause for review after labelling", key=f"launch_pl_{method}_review",
                         help="The pipeline stops after the judge so you can read the judged pairs on the Runs page; "
                         "Resume continues with DPO, Delete stops it.")
    return {"judge": judge, "constitution": constitution, "review": review} if ok else None


def pipeline_form_section(method: str, model: str, trust: bool) -> None:
    """The pipeline's inputs, every stage's plan (as `alignplan run --dry-run` makes it), then Launch."""
    from runners.demo.tiny import default_tiny_model_dir

    d = pipeline_form.definition(method)
    st.caption(f"{d.name}: " + "; ".join(f"**{s.name}** ({s.method}): {s.summary}" for s in d.stages) + ".")
    with st.container(border=True):
        data, given, data_ok = _pipeline_inputs(method)
    tiny = st.session_state["launch_model_source"] == TINY
    judging = {"judge": None, "constitution": None, "review": False}
    if method != "rlhf":
        with st.container(border=True):
            judging = _judge_section(method, tiny)
    with st.container(border=True):
        settings = _pipeline_settings(method, tiny)
    if not (data_ok and settings is not None and judging is not None and model):
        if not model:
            st.error("Model: give a hub id (org/name) or a local model directory.")
        st.button("Launch", type="primary", disabled=True, key="launch_go_disabled", icon=":material/rocket_launch:")
        return
    spec_data = pipeline_form.spec_dict(method, model, trust, data, given, settings["max_steps"], settings["hparams"],
                                        settings["precision"], settings["name"], **judging)
    from runners.pipelines.spec import PipelineSpec

    if not errors.attempt("The pipeline settings are not valid", PipelineSpec.parse, spec_data).ok:
        st.button("Launch", type="primary", disabled=True, key="launch_go_disabled", icon=":material/rocket_launch:")
        return
    with st.container(border=True):
        st.markdown("**Plan of every stage** (each stage runs after the previous one; the peak is the largest)")
        got = errors.attempt("Planning the stages", pipeline_form.stage_plan, spec_data)
        if got.ok:
            plan = got.value
            st.dataframe(pd.DataFrame(pipeline_form.plan_rows(plan)), hide_index=True, key="launch_pipeline_plan")
            decision = plan.get("decision") or {}
            st.metric("Largest stage peak", formatting.gib(plan.get("predicted_peak_bytes")))
            if decision.get("fits") is False:
                st.warning("**A stage will not fit**: it would run out of memory (see the table).",
                           icon=":material/warning:")
            for note in decision.get("notes") or []:
                st.caption(note)
    with st.expander("pipeline.yaml (what `alignplan run --spec pipeline.yaml` would run)"):
        st.code(yaml.safe_dump(spec_data, sort_keys=False), language="yaml")
    fits = (plan.get("decision") or {}).get("fits") if got.ok else None
    reasons = launch_gate.blockers(fits, model)
    if reasons:
        st.error("**Launch is off**: " + " ".join(reasons), icon=":material/block:")
        if not st.checkbox(launch_gate.OVERRIDE_LABEL, value=False, key="launch_override"):
            st.button("Launch", type="primary", disabled=True, key="launch_go_disabled",
                      icon=":material/rocket_launch:")
            return
    if st.button("Launch", type="primary", key="launch_go", icon=":material/rocket_launch:"):
        if model == str(default_tiny_model_dir()):
            launch_form.ensure_tiny_model()
        with st.spinner("Checking the inputs, preparing every stage and starting the pipeline…"):
            got = errors.attempt("Launching the pipeline", pipeline_form.launch_pipeline, spec_data)
        if got.ok:
            st.session_state[RUN_KEY] = got.value
            st.session_state["runs_focus"] = got.value
            st.rerun()
