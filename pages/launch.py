"""Launch: a run form (prefilled from the advice), data preview, devices, fit check, command, Launch,
then a live monitor of the run."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st
import yaml

from alignplan import (
    errors,
    export_form,
    formatting,
    launch_form,
    launch_gate,
    pipeline_form,
    presets,
    reward_form,
    run_monitor,
    sidebar,
    uploads,
)
from alignplan.launch_form import DEMO_DATA, OTHER, PATH, RUN_KEY, TINY, UPLOAD
from alignplan.launch_pipeline_page import pipeline_form_section

sidebar.use_app_navigation()


def _apply_prefill(methods: tuple[str, ...]) -> None:
    """The advisor's hand-over (session_state['launch_prefill']) sets the form once."""
    pre = st.session_state.pop("launch_prefill", None)
    if not pre:
        return
    method = pre.get("method")
    if method in methods:
        st.session_state["launch_method"] = method
        st.session_state["launch_preset"] = {"method": method, "hparams": pre.get("hparams") or {},
                                             "reward": pre.get("reward"), "stage": pre.get("stage")}
        st.session_state["launch_banner"] = f"Prefilled from the advice: **{pre.get('from', method)}**."
    else:
        st.session_state["launch_banner"] = (
            f"The advice is **{pre.get('from', method)}**, which has no runnable recipe here "
            f"({pre.get('note') or 'no recipe'}); pick one of: {', '.join(methods)}.")
    if pre.get("model"):
        st.session_state["launch_model"] = pre["model"]
        problem = launch_gate.model_problem(pre["model"])
        if problem is None:
            st.session_state["launch_model_source"] = OTHER
        else:  # the advice's model cannot run here: the local choice first, the advice's one a click away
            st.session_state["launch_model_source"] = TINY
            st.session_state["launch_banner"] += (
                f" The tiny demo model is selected: {problem} The advice's model stays in the "
                "“Hub id or local model directory” choice.")


def _model_section(methods: tuple[str, ...]) -> tuple[str, str, bool]:
    st.session_state.setdefault("launch_method", "dpo")
    st.session_state.setdefault("launch_model_source", TINY)
    c1, c2 = st.columns([1, 2])
    method = c1.selectbox("Method", methods, key="launch_method", format_func=_method_label,
                          help="Methods with a recipe (TRL trainers, or ours where TRL has none), and pipelines: "
                          "rlhf runs SFT, then a reward model, then PPO; rlaif generates answers, has a judge "
                          "compare them, then DPO; cai critiques and revises, SFT, then judge and DPO. Each "
                          "stage is an ordinary run.")
    source = c2.radio("Model", (TINY, OTHER), key="launch_model_source", horizontal=True,
                      help="The tiny demo model (2 layers, built locally in a second) trains on a CPU in under "
                      "a minute; a real model needs its weights on this machine or the hub.")
    if source == TINY:
        from runners.demo.tiny import default_tiny_model_dir, is_built

        model = str(default_tiny_model_dir())

        if not is_built(model):
            with st.spinner("Building the tiny demo model (once, a few seconds)…"):
                errors.attempt("Building the tiny demo model", launch_form.ensure_tiny_model)
        c2.caption(f"Two-layer Llama with its own tokenizer, in `{model}`.")
    else:
        st.session_state.setdefault("launch_model", sidebar.shared_choices()[0])
        model = c2.text_input("Hub id or local directory", key="launch_model").strip()
    trust = st.checkbox("Trust remote code", value=False, key="launch_trust",
                        help="Lets transformers run Python code shipped with the model. Off unless you trust it.")
    return method, model, trust


def _data_section(method: str) -> tuple[str | None, bool, dict[str, str]]:
    """(dataset path, usable, column renames) with a preview; an unusable dataset shows what to change."""
    from runners.demo import tiny

    st.session_state.setdefault("launch_data_source", DEMO_DATA)
    source = st.radio("Data", (DEMO_DATA, UPLOAD, PATH), key="launch_data_source", horizontal=True)
    path: str | None = None
    shown = None  # how errors name the file: an upload by its own name
    if source == DEMO_DATA:
        path = str(tiny.demo_data_paths()[tiny.DEMO_DATA_KIND.get(method, "preference")])
        st.caption(f"`{Path(path).name}`, bundled with alignplan.")
    elif source == UPLOAD:
        up = st.file_uploader("Data file (.jsonl, .json, .csv, .parquet)", type=["jsonl", "json", "csv", "parquet"],
                              key="launch_upload")
        if up is not None:
            path = str(uploads.save_dataset_upload(up.getvalue(), up.name))
            shown = uploads.upload_name(up.name, "data.jsonl")
    else:
        path = st.text_input("Path or hub dataset id", key="launch_data_path").strip() or None
    text = st.text_input(launch_form.COLUMNS_LABEL, key="launch_data_columns", placeholder="question=prompt, answer=completion",
                         help="For data whose columns are not named as the method expects: old=new, comma-separated "
                         "(the run's dataset.columns).")
    got = errors.attempt("Rename columns is not valid", launch_form.parse_columns, text)
    if not got.ok:
        return path, False, {}
    columns = got.value
    if path is None:
        st.info("Choose a data file to continue.")
        return None, False, columns
    got = errors.attempt("This dataset cannot be used", launch_form.dataset_preview_as, path, shown or path, method,
                         columns=tuple(columns.items()))
    if not got.ok:
        return path, False, columns
    prev = got.value
    st.success(f"Detected format **{prev['format']}** ({prev['description']}): {prev['count']} rows; "
               f"{method} trains on columns {', '.join(prev['columns'])}.", icon=":material/check:")
    st.dataframe(pd.DataFrame(prev["rows"]).astype(str), hide_index=True, key="launch_preview")
    from alignplan.data_page import launch_summary  # the data doctor's summary, a link to the Data page

    launch_summary(path)
    return path, True, columns


def _hparams_section(method: str, tiny: bool) -> dict[str, Any] | None:
    preset = st.session_state.get("launch_preset") or {}
    preset_hp = preset.get("hparams") if preset.get("method") == method else None
    fields, extras = launch_form.form_hparams(method, tiny, preset_hp)
    tag = f"{method}_{'tiny' if tiny else 'model'}"  # new defaults when the method or model kind changes
    values: dict[str, Any] = {}
    cols = st.columns(4)
    labels = {"learning_rate": "Learning rate", "per_device_train_batch_size": "Batch per device",
              "gradient_accumulation_steps": "Gradient accumulation", "max_length": "Max length (tokens)",
              "max_completion_length": "Max completion tokens", "beta": "Beta",
              "num_generations": "Generations per prompt", "kl_coef": "KL coefficient",
              "response_length": "Response tokens"}
    for i, (name, default) in enumerate(fields.items()):
        col = cols[i % 4]
        key = f"launch_hp_{tag}_{name}"
        if isinstance(default, float) or name in ("learning_rate", "beta"):
            values[name] = col.number_input(labels.get(name, name), value=float(default), min_value=0.0,
                                            format="%.2e" if name == "learning_rate" else "%.3f",
                                            step=float(default) / 10 if default else 0.01, key=key)
        else:
            values[name] = int(col.number_input(labels.get(name, name), value=int(default), min_value=1, step=1,
                                                key=key))
    c1, c2, c3, c4 = st.columns(4)
    from runners.demo import tiny as tiny_model

    values["max_steps"] = int(c1.number_input("Max steps (-1: epochs)", value=tiny_model.DEMO_MAX_STEPS if tiny else -1,
                                              min_value=-1, step=10, key=f"launch_steps_{tag}"))
    values["num_train_epochs"] = c2.number_input("Epochs", value=1.0, min_value=0.1, step=1.0, key="launch_epochs",
                                                 disabled=values["max_steps"] != -1)
    values["precision"] = c3.selectbox("Precision", ("auto", "bf16-kahan", "bf16", "amp-bf16", "fp32"),
                                       key="launch_precision",
                                       help="auto: bf16-kahan on a GPU that has bf16, fp32 on a CPU.")
    values["gradient_checkpointing"] = c4.toggle("Gradient checkpointing", value=True, key="launch_ckpt")
    c1, c2, c3 = st.columns([1, 1, 2])
    values["lora"] = c1.toggle("LoRA adapters", value=False, key="launch_lora")
    values["lora_r"] = int(c2.number_input("LoRA rank", value=16, min_value=1, max_value=1024, key="launch_lora_r",
                                           disabled=not values["lora"]))
    values["name"] = c3.text_input("Run name (optional)", key="launch_name").strip() or None
    from runners.rundir.spec import REWARD_METHODS

    if method in REWARD_METHODS:
        values["reward"] = _reward_section(method, preset.get("reward") if preset.get("method") == method else None)
    text = st.text_area("More TRL settings (YAML mapping)", value=yaml.safe_dump(extras, sort_keys=False) if extras else "",
                        key=f"launch_extras_{tag}", height=80,
                        help="Any other field of the method's TRL config, e.g. `loss_type: [ipo]` or `warmup_steps: 10`.")
    try:
        more = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        st.error(f"More TRL settings: not valid YAML ({exc}). Write one `name: value` per line.")
        return None
    if not isinstance(more, dict):
        st.error("More TRL settings: write a mapping, one `name: value` per line.")
        return None
    values["extras"] = more
    return values


def _reward_section(method: str, preset_reward: dict[str, Any] | None) -> dict[str, Any] | None:
    """ppo/grpo/rloo: a built-in (with its parameters), a Python file (path or upload) or a reward model."""
    start = reward_form.initial_choice(preset_reward)
    tag = f"launch_reward_{method}"
    c1, c2 = st.columns([1, 3])
    source = c1.radio("Reward from", reward_form.SOURCES, index=reward_form.SOURCES.index(start["source"]),
                      key=f"{tag}_source", help="docs/runners.md, Rewards: the built-ins, file rewards and "
                      "the calling convention f(prompts, completions, **columns) -> one number per completion.")
    if source == reward_form.MODEL:
        model = c2.text_input("Reward model (hub id or directory)", value=start["model"], key=f"{tag}_model")
        return reward_form.reward_dict(source, model=model)
    if source == reward_form.BUILTIN:
        names = reward_form.builtins()
        name = c2.selectbox("Built-in reward", list(names), index=list(names).index(start["builtin"]),
                            format_func=lambda n: f"{n}: {names[n]}", key=f"{tag}_builtin")
        params: dict[str, Any] = {}
        fields = reward_form.builtin_params(name)
        cols = st.columns(max(1, len(fields)))
        for col, field in zip(cols, fields, strict=False):
            key, label = f"{tag}_{name}_{field['name']}", field["name"] + (" (required)" if field["required"] else "")
            given = start["params"].get(field["name"]) if start["builtin"] == name else None
            if field["kind"] == "bool":
                params[field["name"]] = col.checkbox(label, value=bool(given if given is not None else field["default"]),
                                                     help=field["help"], key=key)
            elif field["kind"] == "int":
                params[field["name"]] = int(col.number_input(label, value=int(given or field["default"]),
                                                             min_value=field["minimum"] or 0, step=1,
                                                             help=field["help"], key=key))
            else:
                params[field["name"]] = col.text_input(label, value=str(given or field["default"] or ""),
                                                       help=field["help"], key=key)
        return reward_form.reward_dict(source, builtin=name, params=params)
    where = c2.radio("Python file", ("Local path", "Upload"), horizontal=True, key=f"{tag}_file_from")
    if where == "Upload":
        up = c2.file_uploader("Reward file (.py)", type=["py"], key=f"{tag}_upload")
        path = str(reward_form.save_reward_upload(up.getvalue(), up.name)) if up is not None else ""
    else:
        path = c2.text_input("Path to a .py file (or package.module:function)", value=start["file"],
                             key=f"{tag}_path").strip()
    found = reward_form.functions_in_file(path) if path.endswith(".py") else []
    if found:
        index = found.index(start["function"]) if start["function"] in found else 0
        function = c2.selectbox("Function", found, index=index, key=f"{tag}_function")
    else:
        function = c2.text_input("Function", value=start["function"], key=f"{tag}_function_name",
                                 disabled=not path.endswith(".py"))
    got = errors.attempt("Reward parameters", reward_form.parse_params,
                         c2.text_input("Parameters (YAML mapping, optional)", key=f"{tag}_params",
                                       value=yaml.safe_dump(start["params"], default_flow_style=True).strip()
                                       if start["params"] else ""))
    if not got.ok:
        return None
    return reward_form.reward_dict(source, file=path, function=function, params=got.value)


def _reward_check(spec) -> bool:
    """The reward called on two prompts of the data, as `alignplan run` does before launching."""
    ok, message = reward_form.check(spec)
    if not ok:
        st.error(message, icon=":material/error:")
    elif message:
        st.caption(message)
    return ok


def _spec_dict(method: str, model: str, trust: bool, data_path: str, v: dict[str, Any],
               columns: dict[str, str] | None = None) -> dict[str, Any]:
    hparams = {k: v[k] for k in ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
                                 "max_length", "max_completion_length", "beta", "num_generations", "kl_coef",
                                 "response_length") if k in v}
    hparams.update(v["extras"])
    spec: dict[str, Any] = {
        "method": method, "model": model, "dataset": {"path": data_path, **({"columns": columns} if columns else {})},
        "hparams": hparams,
        "precision": None if v["precision"] == "auto" else v["precision"],
        "gradient_checkpointing": v["gradient_checkpointing"], "max_steps": v["max_steps"],
        "num_train_epochs": v["num_train_epochs"], "trust_remote_code": trust, "name": v["name"],
    }
    if v["lora"]:
        spec["lora"] = {"r": v["lora_r"]}  # alpha unset: RunSpec makes it 2 * r
    if v.get("reward"):
        spec["reward"] = v["reward"]
    return spec


def _devices_section():
    got = errors.attempt("Finding the devices", launch_form.devices_found)
    if not got.ok:
        return None
    dev = got.value
    if dev.gpus:
        st.dataframe(pd.DataFrame([{"index": g.index, "GPU": g.name, "memory (GiB)": round(g.total_bytes / formatting.GIB, 1),
                                    "free (GiB)": round(g.free_bytes / formatting.GIB, 1)} for g in dev.gpus]),
                     hide_index=True, key="launch_devices")
    else:
        st.caption(f"No GPU found: the run uses the CPU ({dev.cpu_count} cores, "
                   f"{dev.ram_available_bytes / formatting.GIB:.1f} GiB of {dev.ram_total_bytes / formatting.GIB:.1f} GiB RAM free).")
    for note in dev.notes:
        st.caption(note)
    return dev


SHARDING_LABELS = {"auto": "auto (DeepSpeed if installed, else FSDP2)", "fsdp": "FSDP2 (PyTorch)",
                   "deepspeed": "DeepSpeed ZeRO"}
STAGE_LABELS = {None: "the smallest that fits", 0: "0: a full copy per GPU (DDP)",
                2: "2: shard gradients and optimizer states", 3: "3: shard the weights too"}


def _sharding_section(spec, dev) -> Any:
    """Several GPUs: what shards the model, and at which stage (the planner picks unless told)."""
    from runners.rundir.spec import RunSpec

    c1, c2 = st.columns(2)
    sharding = c1.selectbox("Sharding across GPUs", list(SHARDING_LABELS), format_func=SHARDING_LABELS.get,
                            key="launch_sharding")
    stage = c2.selectbox("Sharding stage", list(STAGE_LABELS), format_func=STAGE_LABELS.get, key="launch_stage",
                         help="Higher stages need less memory per GPU and move more data between GPUs.")
    got = errors.attempt("The sharding settings are not valid", RunSpec.parse,
                     {**spec.model_dump(mode="json"), "sharding": sharding, "zero_stage": stage})
    return got.value if got.ok else None


def _fit_section(spec, dev) -> tuple[Any, Any]:
    """The decision prepare() will take, and the spec it will write (it may precompute the reference)."""
    from runners.rundir.decide import decide_with_reference_fallback

    got = errors.attempt("Checking the memory fit", decide_with_reference_fallback, spec, dev)
    if not got.ok:
        return spec, None
    spec, decision, planned = got.value
    where = "per GPU" if decision.gpu_ids else "in RAM"
    c1, c2, c3 = st.columns(3)
    c1.metric(f"Predicted peak {where}", formatting.gib(decision.predicted_peak_bytes))
    c2.metric("Available" + (" per GPU" if decision.gpu_ids else " RAM"), formatting.gib(decision.usable_bytes))
    c3.metric("Setup", decision.kind, help=decision.reason)
    if decision.fits is False:
        st.warning(f"**This run will not fit**: {decision.reason}. It would run out of memory.",
                   icon=":material/warning:")
        import advisor

        fixes = advisor.fixes_to_fit(planned.get("request") or {}, bool(decision.gpu_ids))
        if fixes:
            st.markdown("Suggested fixes (each checked with the planner):\n" + "\n".join(f"- {f}" for f in fixes))
    elif decision.fits is None:
        st.info("No memory estimate for this model, so the fit is not checked. " + " ".join(decision.notes))
    else:
        st.caption(decision.reason)
    for note in decision.notes if decision.fits is not None else []:
        st.caption(note)
    return spec, decision


def _preview(spec, decision) -> None:
    from runners.paths import runs_root
    from runners.rundir.decide import accelerate_config
    from runners.rundir.prepare import launch_argv
    from runners.rundir.reader import RunDir

    run = RunDir(runs_root() / "<new run id>")
    tabs = st.tabs(["Command", "spec.yaml", "accelerate.yaml"])
    with tabs[0]:
        st.code(shlex.join(launch_argv(run, decision, spec.method)), language="bash")
        st.caption("Run through a supervisor that records it in the registry; the exact command is saved in "
                   "the run directory as command.sh (and command.json).")
    with tabs[1]:
        st.code(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), language="yaml")
    with tabs[2]:
        st.code(yaml.safe_dump(accelerate_config(decision, spec), sort_keys=False), language="yaml")


def _launch_allowed(spec, decision) -> bool:
    """A run expected to fail (no fit, a model not loadable here) launches only with the labelled override."""
    fits = decision.fits if decision is not None else None
    peak = formatting.gib(decision.predicted_peak_bytes) if decision is not None else None
    usable = formatting.gib(decision.usable_bytes) if decision is not None else None
    reasons = launch_gate.blockers(fits, spec.model, peak, usable)
    if not reasons:
        return True
    st.error("**Launch is off**: " + " ".join(reasons), icon=":material/block:")
    return st.checkbox(launch_gate.OVERRIDE_LABEL, value=False, key="launch_override")


def _launch(spec) -> None:
    from runners.demo.tiny import default_tiny_model_dir
    from runners.launch import launch

    with st.spinner("Preparing and starting the run…"):
        if spec.model == str(default_tiny_model_dir()):
            launch_form.ensure_tiny_model()
        run = launch.prepare_and_register(spec)
        launch.launch(run.path)
    st.session_state[RUN_KEY] = run.id
    st.session_state["runs_focus"] = run.id


def _monitor(run_id: str) -> None:
    from runners.launch import launch

    rec = errors.attempt(f"Reading run {run_id}", run_monitor.registry().get, run_id)
    name = rec.value.name if rec.ok else None
    st.subheader(f"Run {name} ({run_id})" if name else f"Run {run_id}")
    status = run_monitor.render_run(run_id, key="launch_monitor")
    bar = st.container(horizontal=True)
    c1 = c2 = c3 = bar
    stopping = run_id in (st.session_state.get(run_monitor.STOPPING_KEY) or set())
    if status == "running" and not stopping and c1.button("Stop", key="launch_stop", icon=":material/stop:"):
        run_monitor.mark_stopping(run_id)
        run_monitor.stop_run_in_background(run_id)
        st.toast("Stopping: the run saves a checkpoint, then exits.")
        st.rerun()
    if status in launch.RESUMABLE_STATUSES and c1.button("Resume", key="launch_resume", icon=":material/replay:"):
        if errors.attempt("Resuming the run", launch.resume, run_id).ok:
            st.toast(f"Resumed {run_id} from its newest checkpoint.")
            st.rerun()
    if c2.button("Open in Runs", key="launch_open_runs", icon=":material/list_alt:"):
        st.session_state["runs_focus"] = run_id
        st.switch_page("pages/runs.py")
    if status != "running" and c3.button("New run", key="launch_new", icon=":material/add:"):
        st.session_state.pop(RUN_KEY, None)
        st.rerun()


def _presets_section() -> None:
    """Save the form under a name, or set it back from one (before the form's widgets exist this run)."""
    with st.expander("Presets: save this form under a name, load one"):
        c1, c2 = st.columns(2)
        name = c1.text_input("Preset name", key="preset_name", placeholder="e.g. dpo-small-lr")
        if c1.button("Save preset", key="preset_save", icon=":material/save:"):
            got = errors.attempt("Saving the preset", presets.save, name, st.session_state)
            if got.ok:
                st.success(f"Saved preset **{name.strip()}**.")
        saved = presets.names()
        if not saved:
            c2.caption("No presets saved yet.")
            return
        choice = c2.selectbox("Saved presets", saved, key="preset_choice")
        if c2.button("Load preset", key="preset_load", icon=":material/upload:"):
            got = errors.attempt("Loading the preset", presets.load, choice)
            if got.ok:
                st.session_state.update(got.value)
                st.session_state["launch_banner"] = f"Loaded preset **{choice}**."


def form_methods() -> tuple[str, ...]:
    """The methods the form offers: every recipe except those that need a judge (the labelling stage runs
    inside the RLAIF/CAI pipelines, `alignplan run --method rlaif`), then the pipelines the form builds."""
    from runners.rundir.spec import JUDGE_METHODS, RECIPE_METHODS

    return tuple(m for m in RECIPE_METHODS if m not in JUDGE_METHODS) + pipeline_form.FORM_PIPELINES


def _method_label(method: str) -> str:
    if method in pipeline_form.FORM_PIPELINES:
        return pipeline_form.method_label(method)
    return method


def main() -> None:
    from runners.rundir.spec import REWARD_METHODS, RunSpec

    st.title("Launch a run")
    run_id = st.session_state.get(RUN_KEY)
    if run_id:
        _monitor(run_id)
        return
    st.caption("Defaults: the built-in tiny demo model and the bundled demo data, so one click on Launch "
               "runs a real DPO training on this machine's CPU in about a minute.")
    methods = form_methods()
    _presets_section()
    _apply_prefill(methods)
    if st.session_state.get("launch_banner"):
        st.info(st.session_state["launch_banner"])
    with st.container(border=True):
        st.markdown("**Method and model**")
        method, model, trust = _model_section(methods)
    if method in pipeline_form.FORM_PIPELINES:
        pipeline_form_section(method, model, trust)
        return
    with st.container(border=True):
        st.markdown("**Data**")
        data_path, data_ok, columns = _data_section(method)
    with st.container(border=True):
        st.markdown("**Hyper-parameters** (TRL's defaults for the method; the tiny model's demo settings)")
        values = _hparams_section(method, st.session_state["launch_model_source"] == TINY)
    missing_reward = values is not None and method in REWARD_METHODS and not values.get("reward")
    if not (data_ok and values is not None and model) or missing_reward:
        if not model:
            st.error("Model: give a hub id (org/name) or a local model directory.")
        if missing_reward:
            st.info("Reward: choose a built-in, give a Python file and its function, or a reward model.")
        st.button("Launch", type="primary", disabled=True, key="launch_go_disabled", icon=":material/rocket_launch:")
        return
    got = errors.attempt("The run settings are not valid", RunSpec.parse, _spec_dict(method, model, trust, data_path, values,
                                                                                  columns))
    if not got.ok:
        return
    spec = got.value
    if spec.reward is not None and not _reward_check(spec):
        st.button("Launch", type="primary", disabled=True, key="launch_go_disabled", icon=":material/rocket_launch:")
        return
    with st.container(border=True):
        st.markdown("**Devices and memory**")
        dev = _devices_section()
        spec = _sharding_section(spec, dev) if dev is not None and len(dev.gpus) > 1 else spec
        decision = None
        if dev is not None and spec is not None:
            spec, decision = _fit_section(spec, dev)
    if spec is None:
        st.button("Launch", type="primary", disabled=True, key="launch_go_disabled", icon=":material/rocket_launch:")
        return
    if decision is not None:
        _preview(spec, decision)
    export_form.export_section(spec, decision.fits if decision is not None else None)
    if not _launch_allowed(spec, decision):
        st.button("Launch", type="primary", disabled=True, key="launch_go_disabled", icon=":material/rocket_launch:")
        return
    if st.button("Launch", type="primary", key="launch_go", icon=":material/rocket_launch:"):
        if errors.attempt("Launching", _launch, spec).ok:
            st.rerun()


errors.run_page(main)
