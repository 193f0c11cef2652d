"""Plan: per-GPU memory of each alignment method for a model, hardware and training setup."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from alignplan import (
    errors,
    figures,
    formatting,
    inputs,
    plan_cache,
    plan_tables,
    share_link,
    sidebar,
    uploads,
)

P = "plan_"  # widget-key prefix of this page's inputs

sidebar.use_app_navigation()


def _seed_from_link() -> None:
    """A shared link's query parameters fill the inputs on the session's first visit."""
    if st.session_state.get("_plan_seeded"):
        return
    st.session_state["_plan_seeded"] = True
    methods = errors.attempt("Loading the methods", plan_cache.method_ids)
    params = {k: v for k, v in st.query_params.to_dict().items() if k in inputs.PLAN_DEFAULTS}
    values, problems = share_link.inputs_from_query(params, methods=methods.value if methods.ok else None)
    for name, value in values.items():
        st.session_state[P + name] = value
    st.session_state.setdefault("_link_problems", []).extend(problems)


def _inputs() -> dict:
    """Draw the inputs; return their values by query-parameter name."""
    import planner

    for name, default in inputs.PLAN_DEFAULTS.items():
        st.session_state.setdefault(P + name, default)
    method_names = {m: f"{p.name} ({m})" for m, p in planner.METHODS.items()}
    st.multiselect(
        "Methods to compare", list(method_names), key=P + "methods", format_func=method_names.get,
        persist_state="session", help="Each method keeps its own set of model copies (policy, reference, "
        "reward, value...) and its own phases; the chart shows each one's peak per GPU.",
    )
    c1, c2, c3, c4 = st.columns([2, 4, 2, 2])  # the adapters' four buttons need the room
    c1.selectbox(
        "Precision", inputs.PRECISIONS, key=P + "precision", persist_state="session",
        help="bf16: weights and AdamW states in bf16 (8 bytes/param for weights+grads+states); "
        "amp-bf16: fp32 weights with bf16 autocast (16 bytes/param); fp32.",
    )
    c2.segmented_control(
        "Adapters", inputs.ADAPTERS, key=P + "adapter", persist_state="session", required=True,
        format_func={"full": "Full", "lora": "LoRA", "qlora": "QLoRA 4-bit", "qlora8": "QLoRA 8-bit"}.get,
        help="LoRA trains small adapters; QLoRA also stores the frozen base in 4-bit NF4 (or 8-bit int8).",
    )
    c3.number_input(
        "LoRA rank", min_value=1, max_value=1024, step=8, key=P + "rank", persist_state="session",
        disabled=st.session_state[P + "adapter"] == "full",
    )
    c4.selectbox("Optimizer", inputs.OPTIMIZERS, key=P + "optimizer", persist_state="session",
                 help="AdamW keeps two moments per trainable parameter; 8-bit AdamW stores them in 1 byte each; "
                 "Adafactor factors the second moment; SGD keeps none.")
    c1, c2, c3 = st.columns(3)
    c1.number_input("Sequence length (tokens)", min_value=1, max_value=1_048_576, step=512,
                    key=P + "seq", persist_state="session")
    c2.number_input("Micro-batch per GPU", min_value=1, max_value=4096, step=1, key=P + "batch",
                    persist_state="session")
    c3.toggle("Gradient checkpointing", key=P + "ckpt", persist_state="session",
              help="Recompute activations in the backward pass: keeps one tensor per layer instead of all.")
    c1, c2, c3, c4 = st.columns(4)
    c1.number_input("Nodes", min_value=1, max_value=1024, step=1, key=P + "nodes", persist_state="session",
                    help="GPU type and GPUs per node are in the sidebar.")
    c2.selectbox(
        "Sharding", inputs.ZERO_STAGES, key=P + "zero", persist_state="session",
        format_func={0: "None (DDP)", 1: "Stage 1 (optimizer states)", 2: "Stage 2 (+ gradients)",
                     3: "Stage 3 / full shard (+ weights)"}.get,
        help="How the training state is split across all GPUs (GPUs per node x nodes).",
    )
    c3.selectbox("Sharding engine", inputs.ENGINES, key=P + "engine", persist_state="session",
                 format_func={"deepspeed": "DeepSpeed ZeRO", "fsdp": "PyTorch FSDP"}.get,
                 disabled=st.session_state[P + "zero"] == 0)
    c4.selectbox(
        "CPU offload", inputs.OFFLOADS, key=P + "offload", persist_state="session",
        format_func={"none": "None", "optimizer": "Optimizer states", "params": "Optimizer + weights"}.get,
        help="Optimizer offload needs sharding stage 1-3; weight offload needs stage 3.",
    )
    c1, c2, c3, c4 = st.columns(4)
    c1.checkbox("Precompute reference log-probs", key=P + "preref", persist_state="session",
                help="DPO-style methods: the reference scores the data once before training, so no reference "
                "copy is held while training (TRL's precompute_ref_log_probs). Not with LoRA (its reference "
                "is the adapter-off policy).")
    c2.selectbox("Loss", inputs.LOSSES, key=P + "loss", persist_state="session",
                 format_func={"": "The method's default", "fused": "Fused LM head (no logits)",
                              "chunked": "Chunked cross-entropy", "materialised": "Materialised logits"}.get,
                 help="How the loss reads the LM head: fused (TRL's fused head, no tokens x vocabulary logits), "
                 "chunked (the logits one chunk of tokens at a time) or materialised (all logits and their "
                 "fp32 log-softmax). PPO's trainer takes materialised only.")
    c3.number_input("Generations per prompt (0: the method's default)", min_value=0, max_value=1024, step=1,
                    key=P + "gens", persist_state="session", help="GRPO/RLOO/online DPO: completions per prompt.")
    c4.number_input("KL coefficient β (empty: the method's default)", min_value=0.0, max_value=100.0, step=0.01,
                    key=P + "beta", persist_state="session", format="%.3f",
                    help="GRPO/RLOO: the KL penalty's weight; 0 drops the reference model.")
    catalogue = list(plan_cache.catalogue_ids())
    c1, c2, c3 = st.columns(3)
    for col, name, label, specials in (
        (c1, "reward", "Reward model", {"rule": "A reward function (no model)"}),
        (c2, "value", "Value model", {"shared": "A value head on the policy"}),
        (c3, "judge", "Judge model", {"api": "A remote judge (API)"}),
    ):
        current = st.session_state[P + name]
        options = [inputs.SAME_AS_POLICY, *specials, *catalogue]
        if current not in options:  # a hub id typed earlier, or from a link
            options.insert(1, current)
        col.selectbox(label, options, key=P + name, accept_new_options=True, persist_state="session",
                      format_func=lambda v, sp=specials: "Same size as the policy" if v == inputs.SAME_AS_POLICY
                      else sp.get(v, v),
                      help="The methods that keep this copy plan it at this model's size.")
    return {name: st.session_state[P + name] for name in inputs.PLAN_DEFAULTS}


def _model_choice() -> str | None:
    """The model to plan: an uploaded config.json wins over the sidebar's model."""
    upload = st.file_uploader("…or upload a model's config.json", type=["json"], key=P + "upload",
                              help="The planner reads the architecture from it; no weights are needed.")
    if upload is None:
        return sidebar.shared_choices()[0]
    data = upload.getvalue()
    try:
        json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        st.error(f"{upload.name}: not a valid JSON file ({exc}). Upload the model's config.json.")
        return None
    st.caption(f"Planning the uploaded {upload.name}; a shared link cannot carry an upload.")
    return str(uploads.save_upload(data, "config.json"))


def _copies_frame(plans: dict) -> pd.DataFrame:
    rows = []
    for method, plan in plans.items():
        for copy in plan.copies:
            row = {"method": method}
            for key, value in copy.items():
                if isinstance(value, dict):  # bytes per component
                    row.update({f"{figures.COMPONENT_LABELS.get(k, k)} (GiB)": v / formatting.GIB for k, v in value.items()})
                elif key.endswith("bytes"):
                    row[key.replace("_bytes", "").replace("bytes", "total") + " (GiB)"] = value / formatting.GIB
                else:
                    row[key] = value
            rows.append(row)
    return pd.DataFrame(rows)


def _fits_frame(plans: dict) -> pd.DataFrame:
    import advisor

    return pd.DataFrame(plan_tables.fits_rows(plans, plan_cache.gpu_table(), advisor.runner_unsharded_methods()))


def _phases_frame(plans: dict) -> pd.DataFrame:
    rows = []
    for method, plan in plans.items():
        for phase in plan.phases:
            rows.append({"method": method, "phase": phase["name"], "total (GiB)": phase["total_bytes"] / formatting.GIB,
                         **{f"{figures.COMPONENT_LABELS.get(k, k)} (GiB)": v / formatting.GIB
                            for k, v in phase.get("components", {}).items()},
                         "peak": phase["name"] == plan.peak_phase})
    return pd.DataFrame(rows)


def _results(plans: dict, model: str, gpu: str, gpus: int) -> None:
    table = plan_cache.gpu_table()
    capacity = table[gpu]["usable_bytes"]
    cols = st.columns(min(len(plans), 5))
    for i, (method, plan) in enumerate(plans.items()):
        fits = plan.fits
        delta = None if fits is None else ("fits" if fits else "does not fit")
        col = cols[i % len(cols)]
        col.metric(
            f"{method} peak per GPU", formatting.gib(plan.peak_bytes_per_gpu), delta=delta,
            delta_color="normal" if fits else "inverse", delta_arrow="off",
            help=f"Against {formatting.gpu_label(gpu, capacity)}: headroom {formatting.gib(plan.headroom_bytes)}.",
        )
        col.caption(f"peak phase: {plan.peak_phase.replace('_', ' ')}")
        col.caption(plan.assumptions)
    fig = figures.memory_breakdown_figure(
        {m: p.components for m, p in plans.items()}, capacity_bytes=capacity,
        capacity_label=f"{gpu}", peak_phase_by_method={m: p.peak_phase for m, p in plans.items()},
        fits_by_method={m: p.fits for m, p in plans.items()},
    )
    st.plotly_chart(fig, key="plan_chart")
    st.caption(f"Per-GPU memory at each method's peak phase, {model} on {gpus} × {gpu}. "
               "Labels above the bars: total and the phase that sets the peak.")

    t_copies, t_fits, t_phases, t_notes = st.tabs(["Model copies", "Fits on", "Phases", "Notes"])
    with t_copies:
        st.dataframe(_copies_frame(plans), hide_index=True, key="plan_copies")
    with t_fits:
        st.caption("Fewest GPUs of each type on which each method fits, with the sharding that count needs: "
                   "one GPU with this setup, else ZeRO-3 (weights, gradients and optimizer states split over "
                   "the GPUs; above 8, 8 per node). Without sharding, more GPUs do not lower the per-GPU peak. "
                   "*Export only*: our runner trains that method unsharded, so the count holds for the "
                   "verl/OpenRLHF export. Memory: what a program can use, as every verdict here compares.")
        st.dataframe(_fits_frame(plans), hide_index=True, key="plan_fits")
    with t_phases:
        st.dataframe(_phases_frame(plans), hide_index=True, key="plan_phases")
    with t_notes:
        for method, plan in plans.items():
            for note in plan.notes:
                st.markdown(f"- **{method}**: {note}")

    frames = [p.to_frame().assign(method=m) for m, p in plans.items()]
    csv = pd.concat(frames, ignore_index=True).to_csv(index=False)
    doc = json.dumps({m: p.to_dict() for m, p in plans.items()}, indent=2, default=str)
    d1 = d2 = st.container(horizontal=True)
    d1.download_button("Download CSV", csv, file_name="alignplan-plan.csv", mime="text/csv",
                       icon=":material/download:", on_click="ignore")
    d2.download_button("Download JSON", doc, file_name="alignplan-plan.json", mime="application/json",
                       icon=":material/download:", on_click="ignore")


def _time_and_cost(plans: dict, kwargs: dict) -> None:
    """Time and cost beside memory (planner.timecost, docs/time-cost.md): per method on this setup,
    each GPU type at its fewest GPUs, and a cost-vs-time chart of the setups that fit."""
    import planner
    from planner import timecost

    st.subheader("Time and cost")
    c1, c2, c3, c4 = st.columns(4)
    examples = c1.number_input("Examples (rows) per epoch", min_value=1, max_value=100_000_000, value=50_000,
                               step=1000, key="plan_time_examples",
                               help="Preference pairs, prompts or texts; each sequence is the sequence length above.")
    epochs = c2.number_input("Epochs", min_value=0.1, max_value=100.0, value=1.0, step=1.0, key="plan_time_epochs")
    within = c3.number_input("Finish within (hours, 0 = any)", min_value=0.0, max_value=10_000.0, value=24.0,
                             step=1.0, key="plan_time_within")
    engine = c4.selectbox("Generation engine", list(timecost.ENGINES), key="plan_time_engine",
                          format_func=lambda e: timecost.ENGINES[e].name,
                          help="How RL rollouts are generated: our recipes use transformers; vLLM is what OpenRLHF/verl use.")
    upload = st.file_uploader("Price table (YAML, per GPU-hour; default: indicative prices)", type=["yaml", "yml", "json"],
                              key="plan_time_prices")
    price_file = str(uploads.save_upload(upload.getvalue(), "prices.yaml")) if upload is not None else None
    prices = timecost.load_prices(price_file)
    work = timecost.Work(examples=int(examples), seq_len=int(kwargs["seq_len"]), epochs=float(epochs),
                         source="rows x sequence length")
    rows, blocks = [], {}
    for method, plan in plans.items():
        req = planner.PlanRequest(method=method, **kwargs)
        block = timecost.time_block(req, work, plan, within_hours=within or None, price_file=price_file, engine=engine)
        blocks[method] = block
        rows.append({"method": method, "GPUs": f"{block['gpus']} x {block['gpu']}", "fits": block["fits"],
                     "wall (h)": round(block["wall_hours"], 2), "GPU-hours": round(block["gpu_hours"], 1),
                     f"cost ({prices.currency})": None if block["cost"] is None else round(block["cost"]),
                     "cheapest within": "-" if not block["cheapest"] else
                     f"{block['cheapest']['count']} x {block['cheapest']['gpu']} ZeRO-{block['cheapest']['zero']}: "
                     f"{block['cheapest']['wall_hours']:.1f} h, {block['cheapest']['cost']:,.0f}"})
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="plan_time_table")
    st.caption(f"Indicative prices ({prices.as_of}; {prices.source}). "
               f"{timecost.factors_line(next(iter(blocks.values())))}; see docs/time-cost.md.")
    pick = st.selectbox("Cost vs time of the setups that fit, for", list(blocks), key="plan_time_method")
    b = blocks[pick]
    st.plotly_chart(figures.cost_time_figure(b["candidates"], within or None, b["cheapest"], prices.currency),
                    key="plan_time_chart")
    engines = {e: v for e, v in b["by_engine"].items()}
    if engines:
        st.caption("Generation engine: " + ", ".join(f"{e} {v['wall_seconds'] / 3600:.1f} h" for e, v in engines.items()))


def main() -> None:
    st.title("Plan GPU memory")
    st.caption("How much memory each alignment method needs per GPU, and why. The link in the address bar "
               "holds these inputs: share it to share the plan.")
    _seed_from_link()
    for problem in st.session_state.pop("_link_problems", []):
        st.warning(problem)
    model = _model_choice()
    values = _inputs()
    _, gpu, gpus = sidebar.shared_choices()
    st.query_params.from_dict(share_link.query_from_inputs({**values, inputs.MODEL_KEY: sidebar.shared_choices()[0],
                                                            inputs.GPU_KEY: gpu, inputs.GPUS_KEY: gpus}))
    if model is None:
        return
    if not values["methods"]:
        st.info("Pick at least one method to compare.")
        return
    kwargs = inputs.request_kwargs(values, model, gpu, gpus)
    for warning in inputs.setup_warnings(kwargs):
        st.warning(warning, icon=":material/warning:")
    with st.spinner("Planning…"):
        plans = errors.attempt("Planning", plan_cache.plans_for, kwargs, list(values["methods"]))
    if plans.ok:
        errors.attempt("Showing the plan", _results, plans.value, model, gpu, gpus)
        errors.attempt("Estimating time and cost", _time_and_cost, plans.value, kwargs)


errors.run_page(main)
