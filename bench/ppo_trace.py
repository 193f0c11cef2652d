"""One real PPO iteration of our PPOTrainer, traced phase by phase on CPU, against the planner's phases.

    python bench/ppo_trace.py            # writes bench/results/ppo_trace.json and .md

Each case builds a small config with random weights (a Llama-like one with GQA, a Qwen2-like one
with qkv bias), the four models the ppo recipe builds (policy; reference = a frozen copy, or the
policy with its adapter off under LoRA; reward = a sequence classifier; value = a trainable copy of
the reward model, PPOConfig's value_model="reward"), all fp32 on CPU, and runs two iterations of
runners.rl.PPOTrainer under torch's MemTracker, which counts every CPU storage alive. The second
iteration is the one compared: Adam moments exist from the first optimizer step on ("step 2 is
the real peak"). The phases are cut where the trainer moves from one to the next:

  generation        rollout.sample (model.generate with its KV cache), batch = per_device_train_batch_size
  scoring           the no-grad forwards that follow: policy log-probs and entropy, reference
                    log-probs, values, reward scores, in micro-batches
  forward_backward  PPOTrainer.update up to each gradient clip: forwards of policy and value on a
                    micro-batch and one backward through both
  optimizer_step    gradient clipping, both AdamW steps and zero_grad

The trainer's AdamW is fused (see trace(): the unfused step's temporaries are
not in the planner). Each phase's figure is the largest total of live bytes while the phase runs; the planner's is the
same phase of planner.estimate(...) without the overhead term (CUDA context and allocator reserve,
which a CPU has not). Prompts are token ids of uneven lengths (left padding, as in real batches), so
the attention masks are those of a padded batch; responses run to response_length (the random
models almost never sample the EOS id).
"""

from __future__ import annotations

import copy
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
MIB = 2**20
PHASES = ("generation", "scoring", "forward_backward", "optimizer_step")

# Small real layouts: hidden 256, 4 layers, GQA; the Qwen2-like one has qkv biases.
CONFIGS: dict[str, dict[str, Any]] = {
    "llama-like": dict(model_type="llama", hidden_size=256, num_hidden_layers=4, num_attention_heads=8,
                       num_key_value_heads=4, intermediate_size=688, vocab_size=8192, tie_word_embeddings=False,
                       max_position_embeddings=1024),
    "qwen2-like": dict(model_type="qwen2", hidden_size=256, num_hidden_layers=4, num_attention_heads=8,
                       num_key_value_heads=2, intermediate_size=704, vocab_size=8192, tie_word_embeddings=False,
                       max_position_embeddings=1024),
}

# The same layouts at test size (tests/planner/test_ppo_trace.py).
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny-llama": dict(CONFIGS["llama-like"], hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=176, vocab_size=2048),
    "tiny-qwen2": dict(CONFIGS["qwen2-like"], hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, intermediate_size=160, vocab_size=2048),
}
TINY_SHAPE = dict(prompt_len=24, response_len=24, rollout_batch=4, num_mini_batches=2)

# (name, gradient checkpointing, LoRA rank)
CASES = (("full", False, None), ("full+ckpt", True, None), ("lora", False, 8))

# One iteration's shape: 8 prompts rolled out, updated in 2 mini-batches of 4 (num_mini_batches=2).
SHAPE = dict(prompt_len=64, response_len=64, rollout_batch=8, num_mini_batches=2)
LORA_DROPOUT = 0.05  # the spec's default; the trainer switches every dropout off (disable_dropout)


class IdTokenizer:
    """What PPOTrainer asks of a tokenizer, over whitespace-separated token ids: padding (left or
    right), eos/pad ids and batch_decode. Lets the trace fix every prompt's length exactly."""

    def __init__(self, eos_token_id: int, pad_token_id: int = 0) -> None:
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.padding_side = "right"

    def __call__(self, texts: list[str], return_tensors: str = "pt", padding: bool = True) -> dict:
        import torch

        rows = [[int(t) for t in text.split()] for text in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            sl = slice(width - len(r), width) if self.padding_side == "left" else slice(0, len(r))
            ids[i, sl] = torch.tensor(r)
            mask[i, sl] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def batch_decode(self, ids, skip_special_tokens: bool = True) -> list[str]:
        return [" ".join(str(int(t)) for t in row if int(t) not in (self.pad_token_id, self.eos_token_id))
                for row in ids]


def hf_config(name: str, **overrides: Any):
    from transformers import AutoConfig

    kw = {**{**CONFIGS, **TINY_CONFIGS}[name], **overrides}
    cfg = AutoConfig.for_model(kw.pop("model_type"), **kw)
    cfg._attn_implementation = "sdpa"
    cfg.pad_token_id = 0
    cfg.eos_token_id = cfg.vocab_size - 1
    return cfg


def prompts_for(shape: dict[str, int], vocab: int, n: int) -> list[str]:
    """n prompts of token ids 1 .. vocab-2, lengths from prompt_len down (uneven: left padding)."""
    import torch

    g = torch.Generator().manual_seed(0)
    longest = shape["prompt_len"]
    out = []
    for i in range(n):
        length = longest - (i % 4) * max(1, longest // 8)
        out.append(" ".join(str(int(t)) for t in torch.randint(1, vocab - 1, (length,), generator=g)))
    return out


class _NoHandle:
    @staticmethod
    def remove() -> None:
        pass


class PhaseTracker:
    """MemTracker with a current phase: the largest live total (and its breakdown) per phase.

    Only the device totals are kept: MemTracker's per-module statistics refuse a model called again
    in the same region (generate() calls the policy once per token) and are not needed here."""

    def __new__(cls):
        import torch
        from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker

        class _Tracker(MemTracker):
            def __init__(self) -> None:
                super().__init__()
                self.phase: str | None = None
                self.peaks: dict[str, dict[str, int]] = {}

            def set_phase(self, phase: str | None) -> None:
                self.phase = phase
                self.record()

            def record(self) -> None:
                if self.phase is None:
                    return
                snap = self._curr_mem_snap.get(torch.device("cpu"))
                if not snap:
                    return
                best = self.peaks.get(self.phase)
                if best is None or snap[_TOTAL_KEY] > best["total"]:
                    self.peaks[self.phase] = {str(k).rsplit(".", 1)[-1].lower(): int(v) for k, v in snap.items()}

            def _track_module_params_and_buffers(self, module, install_grad_hooks: bool = True):
                # frozen parameters (reference, reward, LoRA's base) take no gradient hook
                for param in module.parameters():
                    if not param.requires_grad:
                        self._param_to_grad_hook_handles.setdefault(param, (_NoHandle, _NoHandle))
                return super()._track_module_params_and_buffers(module, install_grad_hooks)

            # Per-module statistics are not needed (and cost a snapshot per module call, per
            # generated token): the device totals are kept by __torch_dispatch__ alone.
            def _pre_fw_hook(self, module, inputs) -> None:
                pass

            def _post_fw_hook(self, module, inputs, outputs) -> None:
                pass

            def _pre_bw_hook(self, module, args) -> None:
                pass

            def _post_bw_hook(self, module, args) -> None:
                pass

            def _update_peak_stats(self, peak_state) -> None:
                self.record()

            def watch(self, *models) -> None:
                """Weights and buffers as PARAM/BUFFER; gradients of trainable weights as GRAD."""
                for model in models:
                    if model is not None:
                        self._track_module_params_and_buffers(model, install_grad_hooks=True)

        return _Tracker()


def build_models(name: str, lora_rank: int | None):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    cfg = hf_config(name)
    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    reward = AutoModelForSequenceClassification.from_config(hf_config(name, num_labels=1), dtype=torch.float32)
    value = copy.deepcopy(reward)  # PPOConfig.value_model="reward": a trainable copy of the reward model
    if lora_rank:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(policy, LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, target_modules="all-linear",
                                                   lora_dropout=LORA_DROPOUT, task_type="CAUSAL_LM"))
        ref = None
    else:
        ref = copy.deepcopy(policy)
    return cfg, policy, ref, value, reward


def _unfused_optimizer(trainer, model, lr: float):
    """PPOTrainer._optimizer as it was before 2026-11-28: torch's default (for-loop on CPU) AdamW."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=lr, eps=trainer.config.adam_epsilon,
                             weight_decay=trainer.config.weight_decay)


def trace(name: str, grad_ckpt: bool, lora_rank: int | None, shape: dict[str, int] = SHAPE,
          fused_adamw: bool = True) -> dict[str, Any]:
    """Two PPO iterations under the tracker; the second iteration's peak per phase, in bytes.

    fused_adamw: the trainer's own AdamW (fused=True since 2026-11-28); False builds torch's default
    instead, whose step holds temporaries the planner does not count: on CPU two copies of the largest
    parameter (measured here: optimizer_step at 0.89-0.94 of the trace), on CUDA (foreach) sqrt(v)
    of every parameter at once."""
    import runners.rl.ppo_trainer as ppo_module
    from runners.rl.ppo_config import PPOConfig
    from runners.rl.ppo_trainer import PPOTrainer

    cfg, policy, ref, value, reward = build_models(name, lora_rank)
    tokenizer = IdTokenizer(eos_token_id=cfg.vocab_size - 1)
    config = PPOConfig(
        per_device_train_batch_size=shape["rollout_batch"], num_mini_batches=shape["num_mini_batches"],
        gradient_accumulation_steps=1, ppo_epochs=1, response_length=shape["response_len"], max_steps=2,
        temperature=1.0, learning_rate=1e-5, gradient_checkpointing=grad_ckpt, seed=0, sample_every=1000,
    )
    real_optimizer = PPOTrainer._optimizer  # fused since 2026-11-28
    if not fused_adamw:
        PPOTrainer._optimizer = _unfused_optimizer
    try:
        trainer = PPOTrainer(config, policy, ref, value, reward, tokenizer,
                             prompts_for(shape, cfg.vocab_size, 4 * shape["rollout_batch"]))
    finally:
        PPOTrainer._optimizer = real_optimizer
    tracker = PhaseTracker()
    tracker.watch(trainer.policy, trainer.value, trainer.reward_model, trainer.ref_policy)
    lengths: dict[str, int] = {}

    def phase(p: str) -> str | None:
        return p if trainer.iteration == 1 else None  # only the second iteration is recorded

    real_sample, real_update = ppo_module.sample, trainer.update
    real_clip = trainer.accelerator.clip_grad_norm_
    real_zero = trainer.value_optimizer.zero_grad

    def sample(*args, **kwargs):
        tracker.set_phase(phase("generation"))
        out = real_sample(*args, **kwargs)
        lengths.update(query=out.query_ids.shape[1], response=out.response_ids.shape[1])
        tracker.set_phase(phase("scoring"))
        return out

    def update(*args, **kwargs):
        tracker.set_phase(phase("forward_backward"))
        out = real_update(*args, **kwargs)
        tracker.set_phase(None)
        return out

    def clip(*args, **kwargs):
        tracker.set_phase(phase("optimizer_step"))
        return real_clip(*args, **kwargs)

    def zero_grad(*args, **kwargs):
        out = real_zero(*args, **kwargs)
        tracker.set_phase(phase("forward_backward"))
        return out

    ppo_module.sample = sample
    trainer.update = update
    trainer.accelerator.clip_grad_norm_ = clip
    trainer.value_optimizer.zero_grad = zero_grad
    try:
        with tracker:
            trainer.train()
    finally:
        ppo_module.sample = real_sample
    return {"phases": {p: tracker.peaks[p] for p in PHASES}, "query_len": lengths["query"],
            "response_len": lengths["response"], "micro_batch": config.micro_batch_size,
            "rollout_batch": config.per_device_train_batch_size}


def plan_phases(name: str, grad_ckpt: bool, lora_rank: int | None, seq_len: int, completion_len: int,
                micro_batch: int, rollout_batch: int) -> dict[str, dict[str, int]]:
    import planner
    from planner.models import spec_from_config

    spec = spec_from_config(hf_config(name).to_dict(), name)
    req = planner.PlanRequest(model=spec, method="ppo", seq_len=seq_len, completion_len=completion_len,
                              batch_size=micro_batch, rollout_batch_size=rollout_batch, precision="fp32",
                              grad_ckpt=grad_ckpt, lora_rank=lora_rank, lora_dropout=LORA_DROPOUT)
    plan = planner.estimate(req, with_min_gpus=False)
    return {p["name"]: {k: v for k, v in p["components"].items() if k != "overhead"} for p in plan.phases}


def compare(name: str, case: str, grad_ckpt: bool, lora_rank: int | None, shape: dict[str, int] = SHAPE,
            fused_adamw: bool = True) -> dict:
    started = time.time()
    traced = trace(name, grad_ckpt, lora_rank, shape, fused_adamw)
    seq_len = traced["query_len"] + traced["response_len"]
    planned = plan_phases(name, grad_ckpt, lora_rank, seq_len, traced["response_len"], traced["micro_batch"],
                          traced["rollout_batch"])
    phases = []
    for p in PHASES:
        t, comps = traced["phases"][p]["total"], planned[p]
        phases.append({"phase": p, "traced_bytes": t, "planned_bytes": sum(comps.values()),
                       "ratio": round(sum(comps.values()) / t, 4), "traced": traced["phases"][p], "planned": comps})
    return {"config": name, "case": case, "fused_adamw": fused_adamw, "grad_ckpt": grad_ckpt, "lora_rank": lora_rank, "seq_len": seq_len,
            "completion_len": traced["response_len"], "rollout_batch": traced["rollout_batch"],
            "micro_batch": traced["micro_batch"], "phases": phases, "seconds": round(time.time() - started, 1)}


def rows() -> list[dict]:
    import torch

    torch.set_num_threads(2)
    out = []
    for name in CONFIGS:
        for case, ckpt, rank in CASES:
            out.append(compare(name, case, ckpt, rank))
            print(name, case, [(p["phase"], p["ratio"]) for p in out[-1]["phases"]], f"{out[-1]['seconds']} s",
                  flush=True)
    return out


def write(data: list[dict]) -> None:
    import peft
    import torch
    import transformers

    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "shape": SHAPE}
    (RESULTS / "ppo_trace.json").write_text(json.dumps({"meta": meta, "rows": data}, indent=2) + "\n")
    lines = [
        "# One PPO iteration of our PPOTrainer, traced on CPU, against the planner's phases",
        "",
        f"`python bench/ppo_trace.py`, {meta['when']}: torch {meta['torch']}, transformers "
        f"{meta['transformers']}, peft {meta['peft']}. fp32, hidden 256, 4 layers, vocabulary 8,192; "
        f"{SHAPE['rollout_batch']} prompts of up to {SHAPE['prompt_len']} tokens (left-padded) rolled out to "
        f"{SHAPE['response_len']} new tokens, updated in {SHAPE['num_mini_batches']} mini-batches; LoRA r 8 on "
        "all linears; the trainer's AdamW built with fused=True. The second iteration (Adam moments exist), "
        "MemTracker's live CPU bytes at each phase's peak; planner = that phase without the overhead term. MiB.",
        "",
        "| config | case | phase | traced | planned | planned / traced |",
        "|---|---|---|---|---|---|",
    ]
    for r in data:
        for p in r["phases"]:
            lines.append(f"| {r['config']} | {r['case']} | {p['phase']} | {p['traced_bytes'] / MIB:.1f} | "
                         f"{p['planned_bytes'] / MIB:.1f} | {p['ratio']:.3f} |")
    (RESULTS / "ppo_trace.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    data = rows()
    write(data)
    print((RESULTS / "ppo_trace.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
