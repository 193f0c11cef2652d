"""Measured GPU memory of real training steps next to the planner's estimate (run on a CUDA GPU).

    python bench/gpu_check.py --out "$OUT"            # on an H100: about 5 minutes (timeout_s 600)
    python bench/gpu_check.py --dry-run               # planner side only, any machine, no torch
    python bench/gpu_check.py --smoke                 # the training code on CPU with 2-layer, narrow copies

First, the per-layer saved-tensor check of tests/planner/test_activations.py on the GPU's kernels
(layer_checks; planner ratios should be 1.0 where CUDA saves what CPU saves). Then, for catalogue
layouts with random weights (bf16, SDPA, padded batches, gradient checkpointing on
unless a run says otherwise), 3 training steps each:
  sft     TRL 1.16's fused LM head (trl.trainer.utils.add_fused_lm_head), next-token loss;
  dpo     chosen + rejected concatenated (2 x sequences) through the policy with the fused head,
          reference log-probs first under no_grad (a frozen copy; with LoRA the adapter disabled);
  plain2x 2 x sequences with materialised logits and a plain log-softmax (planner: simpo, whose
          TRL trainer materialises logits).
AdamW is torch's fused AdamW (the HF Trainer default, adamw_torch_fused). Each step records
torch.cuda.max_memory_allocated / max_memory_reserved for forward+backward and for the optimizer
step. The planner's peak_bytes_per_gpu includes its overhead term (CUDA context + 5% allocator
reserve): compare max_allocated with peak - overhead, and max_reserved with peak - context.
Then real TRL 1.16 trainers (`trl` runs): DPOTrainer and GRPOTrainer (transformers generate) for
3 steps on catalogue layouts with random weights saved to disk (TRL loads the policy and DPO's
reference from the path, as our runner does), pure bf16 with fused AdamW and one amp-bf16 run
(fp32 weights, CUDA autocast); max_memory_allocated / max_memory_reserved over steps 2-3 (step 1
creates the Adam moments) next to the planner's peak for the same request.
One JSON document goes to --out/gpu_check.json, rewritten after every run (partial results survive
a timeout); runs that run out of memory are recorded as such.

On the device machine (no TRL there): carry the wheels `scripts/gpu_wheels.sh` downloads, then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD && PYTHONUNBUFFERED=1 python3 bench/gpu_check.py --out $OUT
(run with carry [".whl"], timeout_s 600; --budget-s keeps it inside 8 minutes).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import planner  # noqa: E402
from planner import terms  # noqa: E402

MODE_TO_METHOD = {"sft": "sft", "dpo": "dpo", "plain2x": "simpo"}


@dataclass(frozen=True)
class Run:
    model: str
    mode: str  # sft | dpo | plain2x
    seq_len: int
    batch_size: int  # examples per micro-batch (dpo/plain2x put 2 sequences per example through the policy)
    lora_rank: int | None = None
    grad_ckpt: bool = True

    @property
    def label(self) -> str:
        lora = f"-lora{self.lora_rank}" if self.lora_rank else ""
        ckpt = "" if self.grad_ckpt else "-nockpt"
        return f"{self.model.split('/')[-1]}-{self.mode}{lora}-s{self.seq_len}-b{self.batch_size}{ckpt}"


SMOL, QWEN, L1B, L8B = ("HuggingFaceTB/SmolLM2-135M", "Qwen/Qwen2.5-0.5B", "meta-llama/Llama-3.2-1B",
                        "meta-llama/Llama-3.1-8B")

RUNS = [
    Run(SMOL, "sft", 512, 4), Run(SMOL, "sft", 2048, 4), Run(SMOL, "dpo", 2048, 2),
    Run(SMOL, "sft", 1024, 4, grad_ckpt=False),
    Run(QWEN, "sft", 1024, 4), Run(QWEN, "dpo", 1024, 4), Run(QWEN, "plain2x", 1024, 2),
    Run(QWEN, "sft", 1024, 2, grad_ckpt=False), Run(QWEN, "sft", 4096, 2),
    Run(L1B, "sft", 1024, 4), Run(L1B, "dpo", 2048, 2), Run(L1B, "sft", 4096, 2),
    Run(L8B, "sft", 1024, 2, lora_rank=16), Run(L8B, "dpo", 1024, 2, lora_rank=16),
    Run(L8B, "sft", 4096, 2, lora_rank=16),
]



@dataclass(frozen=True)
class TRLRun:
    """A real TRL trainer for a few steps."""

    model: str
    trainer: str  # dpo | grpo
    seq_len: int  # dpo: max_length; grpo: prompt + completion tokens
    batch_size: int  # per_device_train_batch_size (dpo: pairs; grpo: completions)
    precision: str = "bf16"  # bf16: bf16 weights + fused AdamW | amp-bf16: fp32 weights + autocast
    num_generations: int = 4  # grpo

    @property
    def label(self) -> str:
        return f"trl-{self.trainer}-{self.model.split('/')[-1]}-{self.precision}-s{self.seq_len}-b{self.batch_size}"


TRL_RUNS = [
    TRLRun(SMOL, "dpo", 1024, 4), TRLRun(QWEN, "dpo", 1024, 2), TRLRun(QWEN, "dpo", 1024, 2, "amp-bf16"),
    TRLRun(L1B, "dpo", 1024, 2), TRLRun(QWEN, "grpo", 512, 8, num_generations=8),
    TRLRun(SMOL, "grpo", 512, 8, num_generations=8),
]

SMOKE_OVERRIDES = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "head_dim": 16}


SMOKE_SEQ = 48


def run_config(run: Run | TRLRun, smoke: bool) -> dict:
    cfg = {k: v for k, v in planner.load_model(run.model).config.items() if k not in ("architectures", "torch_dtype")}
    if smoke:
        cfg.update(SMOKE_OVERRIDES)
        cfg.pop("layer_types", None)
    return cfg


def planner_side(run: Run, cfg: dict) -> dict:
    req = planner.PlanRequest(model=planner.spec_from_config(cfg, run.model), method=MODE_TO_METHOD[run.mode],
                              seq_len=run.seq_len, batch_size=run.batch_size, precision="bf16",
                              lora_rank=run.lora_rank, grad_ckpt=run.grad_ckpt, optimizer="adamw",
                              gpu="H100-80GB")
    plan = planner.estimate(req, with_min_gpus=False)
    overhead = plan.components["overhead"]
    return {
        "method": req.method,
        "peak_bytes_per_gpu": plan.peak_bytes_per_gpu,
        "peak_phase": plan.peak_phase,
        "components": plan.components,
        "phases": {ph["name"]: ph["total_bytes"] - ph["components"]["overhead"] for ph in plan.phases},
        "peak_minus_overhead": plan.peak_bytes_per_gpu - overhead,
        "peak_minus_context": plan.peak_bytes_per_gpu - terms.CUDA_CONTEXT_BYTES,
        "notes": plan.notes,
    }


# --- the real steps (torch imported lazily: --dry-run needs none of it) ------------------------------


def _batch(torch, run: Run, vocab: int, device, seed: int):
    """Padded batch: every other sequence loses its last eighth to padding (labels -100 there)."""
    seqs = run.batch_size * (1 if run.mode == "sft" else 2)
    g = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(0, vocab, (seqs, run.seq_len), generator=g)
    mask = torch.ones_like(ids)
    mask[1::2, run.seq_len - max(run.seq_len // 8, 1):] = 0
    labels = ids.masked_fill(mask == 0, -100)
    return ids.to(device), mask.to(device), labels.to(device)


def _build(torch, run: Run, cfg: dict, device):
    import transformers
    from trl.trainer.utils import add_fused_lm_head

    kw = dict(cfg)
    config = transformers.AutoConfig.for_model(kw.pop("model_type"), **kw)
    config._attn_implementation = "sdpa"
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    ref = None
    if run.mode == "dpo" and not run.lora_rank:
        ref = copy.deepcopy(model).eval().requires_grad_(False)
        add_fused_lm_head(ref)
    if run.mode != "plain2x":
        add_fused_lm_head(model)  # before PEFT wraps it, as TRL does
    if run.grad_ckpt:
        model.gradient_checkpointing_enable()  # transformers' default: non-reentrant
    if run.lora_rank:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=run.lora_rank, lora_alpha=2 * run.lora_rank, lora_dropout=0.05,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    return model, ref


def _seq_logps(out, labels):
    mask = labels[:, 1:] != -100
    return (out.log_probs * mask).sum(-1)


def _loss(torch, run: Run, model, ref, ids, mask, labels):
    if run.mode == "sft":
        return model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).loss
    if run.mode == "plain2x":
        logits = model(input_ids=ids, attention_mask=mask).logits
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        tgt = labels[:, 1:]
        tok = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (tgt != -100)
        seq = tok.sum(-1)
        return -torch.nn.functional.logsigmoid(seq[0::2] - seq[1::2]).mean()
    with torch.no_grad():  # reference log-probs first, as TRL's DPO computes them
        if ref is not None:
            ref_logps = _seq_logps(ref(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True), labels)
        else:
            with model.disable_adapter():
                ref_logps = _seq_logps(model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True),
                                       labels)
    logps = _seq_logps(model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True), labels)
    ratio = (logps - ref_logps)
    return -torch.nn.functional.logsigmoid(0.1 * (ratio[0::2] - ratio[1::2])).mean()


def measure_run(run: Run, cfg: dict, device: str, steps: int = 3) -> dict:
    import gc

    import torch

    cuda = device == "cuda"
    model, ref = _build(torch, run, cfg, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=cuda)
    out = {"steps": []}
    if cuda:
        torch.cuda.synchronize()
        out["after_load_allocated"] = torch.cuda.memory_allocated()
    for step in range(1, steps + 1):
        ids, mask, labels = _batch(torch, run, cfg["vocab_size"], device, seed=step)
        rec = {"step": step}
        t0 = time.time()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        loss = _loss(torch, run, model, ref, ids, mask, labels)
        loss.backward()
        if cuda:
            torch.cuda.synchronize()
            rec["fwd_bwd_max_allocated"] = torch.cuda.max_memory_allocated()
            rec["fwd_bwd_max_reserved"] = torch.cuda.max_memory_reserved()
            torch.cuda.reset_peak_memory_stats()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
            rec["opt_max_allocated"] = torch.cuda.max_memory_allocated()
            rec["opt_max_reserved"] = torch.cuda.max_memory_reserved()
            rec["max_allocated"] = max(rec["fwd_bwd_max_allocated"], rec["opt_max_allocated"])
            rec["max_reserved"] = max(rec["fwd_bwd_max_reserved"], rec["opt_max_reserved"])
        rec["loss"] = float(loss.detach())
        rec["seconds"] = round(time.time() - t0, 3)
        out["steps"].append(rec)
    if cuda:
        out["max_allocated"] = max(s["max_allocated"] for s in out["steps"])
        out["max_reserved"] = max(s["max_reserved"] for s in out["steps"])
    del model, ref, opt, params
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return out


def trl_planner_side(run: TRLRun, cfg: dict) -> dict:
    prompt = run.seq_len // 2 if run.trainer == "grpo" else None
    req = planner.PlanRequest(model=planner.spec_from_config(cfg, run.model), method=run.trainer,
                              seq_len=run.seq_len, batch_size=run.batch_size, precision=run.precision,
                              grad_ckpt=True, optimizer="adamw", gpu="H100-80GB",
                              num_generations=run.num_generations if run.trainer == "grpo" else None,
                              completion_len=run.seq_len - prompt if prompt else None)
    plan = planner.estimate(req, with_min_gpus=False)
    return {"method": req.method, "peak_bytes_per_gpu": plan.peak_bytes_per_gpu, "peak_phase": plan.peak_phase,
            "components": plan.components,
            "phases": {ph["name"]: ph["total_bytes"] - ph["components"]["overhead"] for ph in plan.phases},
            "peak_minus_overhead": plan.peak_bytes_per_gpu - plan.components["overhead"],
            "peak_minus_context": plan.peak_bytes_per_gpu - terms.CUDA_CONTEXT_BYTES, "notes": plan.notes}


def _trl_model_dir(torch, run: TRLRun, cfg: dict, work: Path) -> Path:
    """Random weights of the catalogue layout in the run's weight dtype, saved with the tiny tokenizer
    (its ids fit every vocabulary here), so TRL loads policy and reference from a path."""
    import shutil

    import transformers

    from runners.demo.tiny import build_tiny_model

    tok_dir = build_tiny_model(work / "tiny")
    out = work / run.label
    kw = dict(cfg)
    config = transformers.AutoConfig.for_model(kw.pop("model_type"), **kw)
    dtype = torch.float32 if run.precision == "amp-bf16" else torch.bfloat16
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config, dtype=dtype).save_pretrained(out)
    for f in tok_dir.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")) or f.name == "chat_template.jinja":
            shutil.copy(f, out / f.name)
    return out


def measure_trl(run: TRLRun, cfg: dict, device: str, steps: int, work: Path) -> dict:
    """max_memory_allocated/reserved over steps 2..steps of a real TRL trainer (step 1 creates the
    Adam moments, so the later steps hold the most), with the trainer's own defaults otherwise."""
    import gc

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    cuda = device == "cuda"
    model_dir = _trl_model_dir(torch, run, cfg, work)
    words = " ".join(f"w{i % 997}" for i in range(4 * run.seq_len))
    common = dict(output_dir=str(work / "out"), per_device_train_batch_size=run.batch_size, max_steps=steps,
                  gradient_checkpointing=True, report_to="none", save_strategy="no", logging_steps=1,
                  learning_rate=1e-6, disable_tqdm=True, use_cpu=not cuda, bf16=run.precision == "amp-bf16",
                  optim="adamw_torch_fused" if cuda else "adamw_torch",
                  model_init_kwargs={"dtype": "float32" if run.precision == "amp-bf16" else "bfloat16",
                                     "attn_implementation": "sdpa"})
    if run.trainer == "dpo":
        from trl import DPOConfig, DPOTrainer

        # a short prompt and long answers: every sequence is cut at max_length
        rows = [{"prompt": words[:64], "chosen": words[i:], "rejected": words[i + 7:]} for i in range(32)]
        trainer = DPOTrainer(model=str(model_dir), args=DPOConfig(max_length=run.seq_len, **common),
                             train_dataset=Dataset.from_list(rows))
    else:
        from trl import GRPOConfig, GRPOTrainer

        prompt_words = words.split()[: run.seq_len // 2]

        def length_reward(completions, **kw):
            return [float(len(c)) for c in completions]

        rows = [{"prompt": " ".join(prompt_words[i:])} for i in range(32)]
        trainer = GRPOTrainer(model=str(model_dir), reward_funcs=length_reward, train_dataset=Dataset.from_list(rows),
                              args=GRPOConfig(num_generations=run.num_generations,
                                              max_completion_length=run.seq_len - run.seq_len // 2, **common))
    out: dict = {"steps": []}

    class Record(TrainerCallback):
        t0 = time.time()

        def on_step_end(self, args, state, control, **kwargs):
            rec = {"step": state.global_step, "seconds": round(time.time() - self.t0, 3)}
            if cuda:
                torch.cuda.synchronize()
                rec["max_allocated"] = torch.cuda.max_memory_allocated()
                rec["max_reserved"] = torch.cuda.max_memory_reserved()
                torch.cuda.reset_peak_memory_stats()
            out["steps"].append(rec)
            Record.t0 = time.time()

    trainer.add_callback(Record())
    if cuda:
        torch.cuda.synchronize()
        out["after_load_allocated"] = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    later = [r for r in out["steps"] if r["step"] >= 2] or out["steps"]
    if cuda:
        out["max_allocated"] = max(r["max_allocated"] for r in later)
        out["max_reserved"] = max(r["max_reserved"] for r in later)
    out["loss"] = [h.get("loss") for h in trainer.state.log_history if "loss" in h]
    del trainer
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return out


def layer_checks(device: str) -> list[dict]:
    """The CPU byte-exact per-layer check (tests/planner/test_activations.py) on the GPU's own kernels:
    flash attention unpadded, memory-efficient attention with a padding mask (does it save the
    additive mask, padded to a multiple of 16?), CUDA's fused dropout (1-byte masks), CUDA autocast."""
    sys.path.insert(0, str(ROOT / "tests" / "planner"))
    import measure

    rows = []
    cases = [(name, seq) for name in measure.TINY_CONFIGS for seq in (measure.SEQ, measure.OTHER_SEQ)]
    cases += [(name, measure.OTHER_SEQ) for name in ("gpt2", "mixtral-moe", "phi3-fused", "gemma2-eager")]
    for (name, seq), precision, padded in itertools.product(cases, ("bf16", "fp32", "amp-bf16"), (False, True)):
        moe = name == "mixtral-moe"
        for lora, drop in ((None, 0.0), (8, 0.0 if moe else 0.05)):
            row = {"config": name, "seq": seq, "precision": precision, "padded": padded, "lora": lora,
                   "lora_dropout": drop}
            try:
                two = measure.measure_saved(name, precision, padded, False, lora, drop, seq=seq, num_layers=2,
                                            device=device)
                three = measure.measure_saved(name, precision, padded, False, lora, drop, seq=seq, num_layers=3,
                                              device=device)
                casts = three.weight_casts - two.weight_casts
                row["measured_bytes"] = three.activations - two.activations + (casts if moe and lora else 0)
                row["weight_casts_bytes"] = casts
                row["planner_bytes"] = measure.planner_layer_bytes(name, precision, padded, lora, drop, seq=seq,
                                                                   mask_bytes=terms.DROPOUT_MASK_BYTES)
                row["ratio"] = round(row["planner_bytes"] / row["measured_bytes"], 4)
                row["saved_shapes_3_layers"] = three.by_shape[:80]
            except Exception as exc:  # a kernel or dtype a GPU refuses: record it, go on
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            rows.append(row)
    return rows


def cuda_context_bytes() -> dict:
    """Device memory in use that PyTorch's allocator does not own (context, cuBLAS workspace)."""
    import torch

    a = torch.ones(1024, 1024, device="cuda", dtype=torch.bfloat16)
    (a @ a).sum().item()
    free, total = torch.cuda.mem_get_info()
    used = total - free
    info = {"device": torch.cuda.get_device_name(), "total_bytes": total, "used_bytes": used,
            "reserved_bytes": torch.cuda.memory_reserved(), "outside_allocator_bytes": used - torch.cuda.memory_reserved(),
            "torch": torch.__version__}
    del a
    torch.cuda.empty_cache()
    return info


def trl_row(run: TRLRun, args, device: str, work: Path, start: float) -> dict:
    """One TRL run's row: planner side, measured side (unless --dry-run), ratios; failures recorded."""
    if time.time() - start > args.budget_s:
        return {"label": run.label, "skipped": "time budget"}
    cfg = run_config(run, args.smoke)
    row = {"label": run.label, **run.__dict__, "planner": trl_planner_side(run, cfg)}
    if not args.dry_run:
        try:
            row["measured"] = m = measure_trl(run, cfg, device, steps=2 if args.smoke else 3, work=work)
            if "max_allocated" in m:
                row["ratio_allocated"] = round(row["planner"]["peak_minus_overhead"] / m["max_allocated"], 4)
                row["ratio_reserved"] = round(row["planner"]["peak_minus_context"] / m["max_reserved"], 4)
        except Exception as exc:  # OOM, a TRL version without a setting: record and go on
            row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            row["traceback"] = traceback.format_exc()[-2000:]
            if device == "cuda":
                import gc

                import torch

                gc.collect()
                torch.cuda.empty_cache()
    measured = row.get("measured", {}).get("max_allocated")
    shown = f"measured {measured / 2**30:7.2f} GiB ratio {row['ratio_allocated']}" if measured else ""
    print(f"{run.label:45s} planner {row['planner']['peak_minus_overhead'] / 2**30:7.2f} GiB {shown} "
          f"{row.get('error', '')}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")),
                    help="directory for gpu_check.json (default: $OUT, else the current directory)")
    ap.add_argument("--dry-run", action="store_true", help="planner side only (no torch, no GPU)")
    ap.add_argument("--smoke", action="store_true", help="run the steps on CPU with 2-layer, narrow copies")
    ap.add_argument("--only", default="", help="comma-separated substrings of run labels to keep")
    ap.add_argument("--budget-s", type=float, default=420, help="start no new run after this many seconds")
    ap.add_argument("--skip-layers", action="store_true", help="skip the per-layer saved-tensor checks")
    ap.add_argument("--skip-trl", action="store_true", help="skip the real TRL trainer runs")
    args = ap.parse_args(argv)
    runs = [r for r in RUNS if not args.only or any(s in r.label for s in args.only.split(","))]
    trl_runs = [] if args.skip_trl else [r for r in TRL_RUNS
                                         if not args.only or any(s in r.label for s in args.only.split(","))]
    if args.smoke:  # exercise the code paths, not the sizes
        runs = [replace(r, seq_len=SMOKE_SEQ, batch_size=min(r.batch_size, 2)) for r in runs]
        trl_runs = [replace(r, seq_len=2 * SMOKE_SEQ, batch_size=4, num_generations=2) for r in trl_runs]
    start = time.time()
    doc: dict = {"planner_overhead": {"cuda_context_bytes": terms.CUDA_CONTEXT_BYTES,
                                      "allocator_reserve": terms.ALLOCATOR_RESERVE},
                 "mode": "dry-run" if args.dry_run else "smoke" if args.smoke else "cuda", "runs": []}
    device = "cpu"
    if not args.dry_run and not args.smoke:
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device: use --dry-run or --smoke", file=sys.stderr)
            return 2
        device = "cuda"
        doc["device"] = cuda_context_bytes()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu_check.json"
    if not args.dry_run and not args.skip_layers:
        t0 = time.time()
        doc["layers"] = layer_checks(device)
        ok = [r["ratio"] for r in doc["layers"] if "ratio" in r]
        print(f"per-layer checks: {len(ok)} rows, ratio {min(ok, default=0):.4f}..{max(ok, default=0):.4f}, "
              f"{sum('error' in r for r in doc['layers'])} errors, {time.time() - t0:.0f} s", flush=True)
        path.write_text(json.dumps(doc, indent=1))
    import tempfile

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for run in trl_runs:
            row = trl_row(run, args, device, Path(tmp), start)
            doc.setdefault("trl", []).append(row)
            doc["seconds"] = round(time.time() - start, 1)
            path.write_text(json.dumps(doc, indent=1))
    for run in runs:
        if time.time() - start > args.budget_s:
            doc["runs"].append({"label": run.label, "skipped": "time budget"})
            continue
        cfg = run_config(run, args.smoke)
        row = {"label": run.label, **run.__dict__, "planner": planner_side(run, cfg)}
        if not args.dry_run:
            try:
                row["measured"] = measure_run(run, cfg, device, steps=2 if args.smoke else 3)
                m, p = row["measured"], row["planner"]
                if "max_allocated" in m:
                    row["ratio_allocated"] = round(p["peak_minus_overhead"] / m["max_allocated"], 4)
                    row["ratio_reserved"] = round(p["peak_minus_context"] / m["max_reserved"], 4)
            except Exception as exc:  # OOM and friends: record and go on with the next run
                row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
                row["traceback"] = traceback.format_exc()[-2000:]
                if device == "cuda":
                    import gc

                    import torch

                    gc.collect()
                    torch.cuda.empty_cache()
        doc["runs"].append(row)
        doc["seconds"] = round(time.time() - start, 1)
        path.write_text(json.dumps(doc, indent=1))
        measured = row.get("measured", {}).get("max_allocated")
        shown = f"measured {measured / 2**30:7.2f} GiB ratio {row['ratio_allocated']}" if measured else ""
        print(f"{run.label:45s} planner {row['planner']['peak_minus_overhead'] / 2**30:7.2f} GiB {shown} "
              f"{row.get('error', '')}", flush=True)
    print(f"wrote {path} in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
