"""Check the planner's memory terms against real PyTorch / transformers / peft on CPU.

    python bench/calibrate_cpu.py            # writes bench/results/cpu_checks.md and cpu_checks.json
    python bench/calibrate_cpu.py --quick    # tiny configs only (about a minute)

Measurements (tests/planner/measure.py, shared with the tests):
  model states   bytes of parameters, gradients and AdamW state after one real optimizer step,
                 against the policy copy of planner.estimate(method="sft");
  activations    bytes autograd saves for backward in one forward + loss (saved_tensors_hooks, one
                 count per storage, parameters left out), against the activation term as
                 planner/estimate.py composes it; per decoder layer (3 layers minus 2) against
                 terms.activation_bytes_per_layer; logits saved by the loss against 4 T V.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "planner"))

import measure  # noqa: E402
import torch  # noqa: E402

from planner import terms  # noqa: E402

PRECISIONS = ("bf16", "fp32", "amp-bf16")
LORAS = ((None, 0.0), (8, 0.0), (8, 0.05))
CATALOGUE_SEQ = 72  # T = 144 differs from every weight dimension of the catalogue layouts used


def _ratio(planner: int, measured: int) -> float:
    return round(planner / measured, 4) if measured else float("nan")


def model_state_rows() -> list[dict]:
    rows = []
    for name, precision, lora in itertools.product(measure.TINY_CONFIGS, PRECISIONS, (None, 8)):
        got = measure.measure_model_states(name, precision, lora)
        want = measure.planner_model_states(name, precision, lora)
        for part in ("weights", "gradients", "optimizer_states"):
            measured = getattr(got, part)
            rows.append({"config": name, "precision": precision, "lora": lora or "-", "part": part,
                         "measured_bytes": measured, "planner_bytes": want[part],
                         "ratio": _ratio(want[part], measured),
                         "note": f"incl. {got.step_counters} B of AdamW step scalars" if part == "optimizer_states"
                         else f"trainable dtype {'/'.join(got.adapter_dtypes)}" if part == "weights" else ""})
    return rows


def activation_rows(names, seq: int) -> tuple[list[dict], list[dict], list[dict]]:
    """Whole-model rows, per-layer rows and logits rows for the given configs."""
    whole, layers, logits = [], [], []
    for name, precision in itertools.product(names, PRECISIONS):
        spec = measure.planner_spec(name)
        for padded, (lora, drop) in itertools.product((False, True), LORAS):
            if name in measure.CATALOGUE_AT_DEPTH and (not padded or (lora and not drop)):
                continue  # the catalogue layouts: padded batches, full fine-tune and LoRA with dropout
            two = measure.measure_saved(name, precision, padded, False, lora, drop, seq=seq)
            three = measure.measure_saved(name, precision, padded, False, lora, drop, seq=seq, num_layers=3)
            layer = three.activations - two.activations
            want_layer = measure.planner_layer_bytes(name, precision, padded, lora, drop, seq=seq)
            layers.append({"config": name, "precision": precision, "padded": padded, "lora": lora or "-",
                           "lora_dropout": drop, "measured_bytes": layer, "planner_bytes": want_layer,
                           "ratio": _ratio(want_layer, layer),
                           "weight_casts_bytes": three.weight_casts - two.weight_casts})
            for ckpt in (False, True):
                got = two if not ckpt else measure.measure_saved(name, precision, padded, True, lora, drop, seq=seq)
                measured = got.activations + got.weight_casts
                want = measure.planner_activations(name, precision, padded, ckpt, lora, drop, seq=seq)
                row = {"config": name, "precision": precision, "padded": padded, "lora": lora or "-",
                       "lora_dropout": drop, "grad_ckpt": ckpt, "layers": spec.num_layers,
                       "measured_bytes": measured, "planner_bytes": want, "ratio": _ratio(want, measured),
                       "weight_casts_bytes": got.weight_casts}
                whole.append(row)
            if padded and not lora:
                want_logits = measure.planner_saved_logits(name, seq=seq)
                tokens = measure.BATCH * seq
                logits.append({"config": name, "precision": precision, "saved_logits_bytes": two.logits,
                               "planner_4TV_bytes": want_logits, "ratio": _ratio(want_logits, two.logits),
                               "output_logits_bytes_eTV": tokens * spec.vocab_size * terms.PRECISIONS[precision].act,
                               "logits_bytes_formula": terms.logits_bytes(tokens, spec.vocab_size)})
    return whole, layers, logits


def other_layout_rows() -> list[dict]:
    """One layer of GPT-2, OPT, Gemma-2 (eager), Mixtral (MoE) and Phi-3 (fused qkv) layouts."""
    rows = []
    seq = measure.OTHER_SEQ
    for name, precision, padded in itertools.product(measure.OTHER_LAYOUTS, PRECISIONS, (False, True)):
        moe = name == "mixtral-moe"
        for lora, drop in ((None, 0.0), (8, 0.0 if moe else 0.05)):
            if lora and not padded:
                continue
            two = measure.measure_saved(name, precision, padded, False, lora, drop, seq=seq, num_layers=2)
            three = measure.measure_saved(name, precision, padded, False, lora, drop, seq=seq, num_layers=3)
            casts = three.weight_casts - two.weight_casts
            # under amp-bf16 the weight casts are autocast's (compared in the whole-model table); with
            # LoRA on MoE experts they are peft's per-layer delta weights, part of the layer term
            layer = three.activations - two.activations + (casts if moe and lora else 0)
            want = measure.planner_layer_bytes(name, precision, padded, lora, drop, seq=seq)
            rows.append({"config": name, "precision": precision, "padded": padded, "lora": lora or "-",
                         "lora_dropout": drop, "measured_bytes": layer, "planner_bytes": want,
                         "ratio": _ratio(want, layer)})
    return rows


def fused_head_rows() -> list[dict]:
    """TRL 1.16's fused LM head (SFT/DPO/KTO/GRPO/RLOO): what the whole model saves, vs the planner's
    activation term with the fused head's saved hidden states (T h e)."""
    rows = []
    for precision, lora, ckpt in itertools.product(PRECISIONS, (None, 8), (False, True)):
        got = measure.measure_saved("llama-gqa", precision, True, ckpt, lora, 0.0, fused_head=True)
        measured = got.activations + got.weight_casts
        want = measure.planner_activations("llama-gqa", precision, True, ckpt, lora, 0.0, fused_head=True)
        rows.append({"config": "llama-gqa", "precision": precision, "lora": lora or "-", "grad_ckpt": ckpt,
                     "measured_bytes": measured, "planner_bytes": want, "ratio": _ratio(want, measured),
                     "saved_logits_bytes": got.logits})
    return rows


def step_peak_rows() -> list[dict]:
    """A whole training step's peak (MemTracker) against the planner's forward_backward phase, for a
    4-layer model with a 32k vocabulary and the plain HF loss (planner: simpo's materialised logits)."""
    rows = []
    name = "llama-v32k"
    tokens = measure.BATCH * measure.SEQ
    for precision, ckpt in itertools.product(PRECISIONS, (False, True)):
        got = measure.measure_step_peak(name, precision, ckpt)
        phases = measure.planner_step_phases(name, precision, ckpt)
        fb = phases["forward_backward"]
        want = sum(fb.values())
        rows.append({"config": name, "precision": precision, "grad_ckpt": ckpt, "measured_peak_bytes": got["Total"],
                     "planner_fwd_bwd_bytes": want, "ratio": _ratio(want, got["Total"]),
                     "measured_act_temp_over_TV": round((got["ACT"] + got["TEMP"]) / (tokens * 32000), 2),
                     "planner_logits_over_TV": round(fb["logits"] / (tokens * 32000), 2),
                     "measured_grad_at_peak": got["GRAD"], "planner_gradients": fb["gradients"]})
    return rows


def full_depth_rows(whole: list[dict], layers: list[dict]) -> list[dict]:
    """Catalogue layouts at their real depth: measured(2 layers) + (L - 2) x measured layer, against
    the planner at L layers (the checkpointing-free case, where depth matters)."""
    from planner import load_model

    out = []
    for w in whole:
        if w["config"] not in measure.CATALOGUE_AT_DEPTH or w["grad_ckpt"]:
            continue
        layer = next(r for r in layers if all(r[k] == w[k] for k in ("config", "precision", "padded", "lora",
                                                                          "lora_dropout")))
        model_id, _ = measure.CATALOGUE_AT_DEPTH[w["config"]]
        depth = load_model(model_id).num_layers
        measured = w["measured_bytes"] + (depth - 2) * layer["measured_bytes"]
        planner = w["planner_bytes"] + (depth - 2) * layer["planner_bytes"]
        if w["precision"] == "amp-bf16":
            spec2 = measure.planner_spec(w["config"])
            per_layer_casts = (terms.autocast_weight_copy_bytes(spec2, 2)
                               - terms.autocast_weight_copy_bytes(spec2, 2, checkpointed=True)) // (spec2.num_layers - 1)
            planner += (depth - 2) * per_layer_casts
            measured += (depth - 2) * layer["weight_casts_bytes"]
        out.append({"config": model_id, "layers": depth, "precision": w["precision"], "lora": w["lora"],
                    "lora_dropout": w["lora_dropout"], "measured_bytes": measured, "planner_bytes": planner,
                    "ratio": _ratio(planner, measured)})
    return out


def _table(rows: list[dict], cols: list[str]) -> str:
    def fmt(v):
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, int):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:.4f}" if v != int(v) or v < 1 else f"{v:g}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


FINDINGS = """\
## What the measurements showed (and what changed in planner/terms.py)

* SDPA's output is laid out (b, s, heads, d), so transformers' `transpose(1, 2).contiguous()` is a
  no-op and `o_proj` saves the same storage: one e T q, not two (Phi-3, whose RoPE concatenates,
  and eager attention do copy).
* With a padding mask transformers does not use SDPA's `enable_gqa` (`use_gqa_in_sdpa` needs
  mask None): k and v are repeated to all heads (e T q each), and torch converts the boolean mask to
  an additive one in the compute dtype on every call, which the kernel saves: e T s per layer.
  Without padding: q + 2 kv. `activation_bytes_per_layer(..., seq_len, padded=True)`.
* The fp32 log-sum-exp (4 T a) and each RMSNorm's rsqrt (4 T) are saved too (small, now counted).
* LoRA: the frozen base linears save no inputs and the frozen norms no normalised output; lora_A
  saves its input in fp32 (bf16 models: peft casts x per targeted linear), or shares it (fp32, no
  dropout); with dropout one output + one mask per targeted linear. Before, the planner added
  LoRA's tensors on top of a full fine-tune's (up to 1.66x too high with checkpointing).
* amp-bf16: each linear saves its own bf16 cast of an fp32 input (3 for q/k/v, 2 for gate/up), and
  autocast's bf16 copies of the weights are saved for backward: 2 bytes per matmul weight
  (`autocast_weight_copy_bytes`; with checkpointing only the LM head's and one layer's).
* GPT-2 (gelu_new is built from elementwise ops: 4 saved tensors) is 8 e T h + 5 e T I per layer,
  OPT 8 e T h + e T I (the planner had 9 e T h + 2 e T I / + e T I). Gemma-2 runs eager attention:
  T a s (e + 4 + e) for the soft-capped scores and fp32 softmax (the planner had 2 e T a s), and its
  norms save fp32. MoE layers also save each expert's output before weighting (e T k h).
* peft 0.21's all-linear on transformers 5 MoE models also wraps the router and the fused expert
  parameters (rank 2 r per expert for gate/up); these build their delta weights on every forward
  and save them: a full bf16 copy of each layer's expert weights (`lora_expert_delta_bytes`), and
  refuse lora_dropout > 0.
* TRL's fused LM head saves the hidden states it scores instead of the final norm's output
  (`final_norm_bytes(head_saves_input=False)`) and no weight cast.
* Dropout masks: CUDA's fused dropout saves a 1-byte bool mask (planner default); CPU's unfused
  dropout saves a noise tensor in the input dtype, so these CPU checks use 4 bytes.
* Logits: the loss saves only its fp32 log-softmax output (4 T V); the e T V logits stay alive in
  the model output; the fp32 gradient (4 T V) appears in backward (not visible to these hooks).
* Left out by the planner (visible in the whole-model ratios of 2-layer models): RoPE's cos/sin
  (shared by all layers), the loss scalar, and, with LoRA and no checkpointing, layer 0's first
  norm and its LoRA dropout masks (the frozen embedding's output needs no gradient), which is why
  those rows read up to ~1.08 at 2 layers and ~1.00 at full depth.
"""


def summary_rows(data: dict) -> list[dict]:
    """min / max planner/measured ratio per check, split where the planner leaves something out."""
    groups = [
        ("model states (weights, grads, AdamW)", data["model_states"], lambda r: True),
        ("one layer, all setups", data["layer"], lambda r: True),
        ("whole model, full fine-tune", data["activations"], lambda r: r["lora"] == "-"),
        ("whole model, LoRA + checkpointing", data["activations"], lambda r: r["lora"] != "-" and r["grad_ckpt"]),
        ("whole model, LoRA, no checkpointing (2 layers)", data["activations"],
         lambda r: r["lora"] != "-" and not r["grad_ckpt"]),
        ("catalogue layouts at full depth", data.get("full_depth", []), lambda r: True),
        ("other layouts, one layer (bf16/fp32)", data["other_layouts"], lambda r: r["precision"] != "amp-bf16"),
        ("other layouts, one layer, amp-bf16 (no MoE)", data["other_layouts"],
         lambda r: r["precision"] == "amp-bf16" and r["config"] != "mixtral-moe"),
        ("Mixtral layer under amp-bf16", data["other_layouts"],
         lambda r: r["precision"] == "amp-bf16" and r["config"] == "mixtral-moe"),
        ("TRL fused LM head, whole model (bf16/fp32)", data["fused_head"], lambda r: r["precision"] != "amp-bf16"),
        ("TRL fused LM head, whole model, amp-bf16", data["fused_head"], lambda r: r["precision"] == "amp-bf16"),
        ("loss: saved logits vs 4 T V", data["logits"], lambda r: True),
        ("whole step peak (MemTracker) vs forward_backward phase", data["step_peak"], lambda r: True),
    ]
    out = []
    for label, rows, keep in groups:
        ratios = [r["ratio"] for r in rows if keep(r)]
        if ratios:
            out.append({"check": label, "rows": len(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios)})
    return out


def write_markdown(path: Path, data: dict) -> None:
    env = data["environment"]
    parts = [
        "# Planner terms vs real PyTorch on CPU",
        "",
        f"Generated by `bench/calibrate_cpu.py` on {data['generated']} ({env['platform']}; torch "
        f"{env['torch']}, transformers {env['transformers']}, peft {env['peft']}; {data['seconds']:.0f} s).",
        "ratio = planner / measured. Tiny configs: hidden 64, 2 layers, 4 heads / 2 KV heads, vocab 1000, "
        f"batch {measure.BATCH} x {measure.SEQ} tokens (padded: the last {measure.PAD} tokens of one sequence); "
        "SDPA attention; random weights.",
        "",
        "## Summary (ratio = planner / measured)",
        "",
        _table(summary_rows(data), ["check", "rows", "min_ratio", "max_ratio"]),
        "",
        FINDINGS,
        "## Model states after one AdamW step (policy copy of `estimate(method='sft')`)",
        "",
        _table(data["model_states"], ["config", "precision", "lora", "part", "measured_bytes", "planner_bytes",
                                      "ratio", "note"]),
        "",
        "## One decoder layer (3-layer model minus 2-layer model) vs `activation_bytes_per_layer`",
        "",
        _table(data["layer"], ["config", "precision", "padded", "lora", "lora_dropout", "measured_bytes",
                               "planner_bytes", "ratio", "weight_casts_bytes"]),
        "",
        "## Whole model: saved activations vs the planner's activation term",
        "",
        "Measured = every saved floating-point storage except parameters and the loss's vocabulary-wide "
        "tensors, plus autocast's weight casts (amp-bf16). Planner = L x layer (or L x layer input with "
        "checkpointing) + final norm (+ weight casts under amp).",
        "",
        _table(data["activations"], ["config", "precision", "padded", "lora", "lora_dropout", "grad_ckpt",
                                     "measured_bytes", "planner_bytes", "ratio", "weight_casts_bytes"]),
        "",
    ]
    if data.get("full_depth"):
        parts += [
            "## Catalogue layouts at full depth (no checkpointing)",
            "",
            "Measured at 2 layers plus (L - 2) x the measured layer; the planner at L layers.",
            "",
            _table(data["full_depth"], ["config", "layers", "precision", "lora", "lora_dropout", "measured_bytes",
                                        "planner_bytes", "ratio"]),
            "",
        ]
    parts += [
        "## Other layouts: one decoder layer vs `activation_bytes_per_layer`",
        "",
        f"hidden 64, 4 heads, batch {measure.BATCH} x {measure.OTHER_SEQ} tokens. GPT-2 / OPT in bf16: CPU's "
        "LayerNorm keeps mean/rstd in bf16, the planner counts CUDA's fp32. Gemma-2: its norms' (1 + weight) fp32 "
        "vectors are left out. Mixtral under amp-bf16: CPU autocast runs the experts in fp32 (the planner "
        "assumes bf16 as for every matmul; unverified on CUDA).",
        "",
        _table(data["other_layouts"], ["config", "precision", "padded", "lora", "lora_dropout", "measured_bytes",
                                       "planner_bytes", "ratio"]),
        "",
        "## TRL's fused LM head (whole model, padded batch)",
        "",
        "No T x V tensor is saved. The head saves the hidden states it scores (T h, in their own dtype: fp32 "
        "under amp-bf16, where `fused_logits_bytes` counts e), not the final norm's output, and casts its "
        "weight tile by tile. The checkpointed amp-bf16 rows read low because the planner's fused term "
        "counts the hidden states at e bytes.",
        "",
        _table(data["fused_head"], ["config", "precision", "lora", "grad_ckpt", "measured_bytes", "planner_bytes",
                                    "ratio", "saved_logits_bytes"]),
        "",
        "## A whole training step (MemTracker on CPU) vs the planner's forward_backward phase",
        "",
        f"4 layers, vocab 32,000, {measure.BATCH} x {measure.SEQ} tokens, plain HF loss, AdamW step 2. The peak "
        "comes at the start of the loss's backward, before any parameter gradient exists: the fp32 log-softmax "
        "output it saved (4 T V) plus its gradient and its input's gradient (8 T V of temporaries) = 12 T V in "
        "every precision (the e-byte logits are dropped with the model output before backward). The planner "
        "counts T V (e + 8) plus the LM head's gradient at that moment. Reported to the lead; estimate.py and "
        "logits_bytes are theirs.",
        "",
        _table(data["step_peak"], ["config", "precision", "grad_ckpt", "measured_peak_bytes", "planner_fwd_bwd_bytes",
                                   "ratio", "measured_act_temp_over_TV", "planner_logits_over_TV",
                                   "measured_grad_at_peak", "planner_gradients"]),
        "",
        "## Logits",
        "",
        "Saved by the loss: the fp32 log-softmax output, 4 T V. The e T V logits are held by the model "
        "output; `terms.logits_bytes` = T V (e + 4 + 4) adds the fp32 gradient of backward.",
        "",
        _table(data["logits"], ["config", "precision", "saved_logits_bytes", "planner_4TV_bytes", "ratio",
                                "output_logits_bytes_eTV", "logits_bytes_formula"]),
        "",
    ]
    path.write_text("\n".join(parts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny configs only")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="output directory")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    import peft
    import transformers

    whole, layers, logits = activation_rows(list(measure.TINY_CONFIGS), measure.SEQ)
    full = []
    if not args.quick:
        w2, l2, g2 = activation_rows(list(measure.CATALOGUE_AT_DEPTH), CATALOGUE_SEQ)
        full = full_depth_rows(w2, l2)
        whole, layers, logits = whole + w2, layers + l2, logits + g2
    data = {
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "environment": {"platform": platform.platform(), "torch": torch.__version__,
                        "transformers": transformers.__version__, "peft": peft.__version__},
        "model_states": model_state_rows(),
        "layer": layers,
        "activations": whole,
        "full_depth": full,
        "other_layouts": other_layout_rows(),
        "fused_head": fused_head_rows(),
        "step_peak": step_peak_rows(),
        "logits": logits,
    }
    data["seconds"] = time.time() - start
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cpu_checks.json").write_text(json.dumps(data, indent=1))
    write_markdown(args.out / "cpu_checks.md", data)
    worst = max(abs(r["ratio"] - 1) for r in data["layer"])
    print(f"wrote {args.out / 'cpu_checks.md'}; per-layer worst |ratio - 1| = {worst:.4f}; {data['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
