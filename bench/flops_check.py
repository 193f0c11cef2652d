"""Check planner.flops against torch.utils.flop_counter.FlopCounterMode on real training steps.

Small Llama-like models (random weights, CPU, eager attention) run the phases of SFT, DPO and a PPO
update step as our trainers run them (PPO: runners/rl/ppo_trainer.py scores with the reference, the
reward model, the policy and the value model without gradients, then one backward goes through policy
and value); FlopCounterMode counts the matrix products of each phase, the planner predicts them from
its copies and phases. Writes bench/results/flops_check.{json,md}.

    .venv/bin/python bench/flops_check.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TOLERANCE = 0.05

# Catalogue-like shapes at a small size: GQA, SwiGLU, untied head, vocab/hidden as in Llama-2.
ARCHS = {
    "llama-tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=8,
                       num_key_value_heads=4, vocab_size=2048, tie_word_embeddings=False),
    "qwen-tiny-tied": dict(hidden_size=192, intermediate_size=512, num_hidden_layers=3, num_attention_heads=6,
                           num_key_value_heads=2, vocab_size=3072, tie_word_embeddings=True),
}

# (method, lora rank, gradient checkpointing)
CASES = [
    ("sft", None, False), ("sft", None, True), ("sft", 8, False), ("sft", 8, True),
    ("dpo", None, False), ("dpo", None, True),
    ("ppo", None, False), ("ppo", None, True),
]


def _config(arch: str) -> dict:
    return {"model_type": "llama", "max_position_embeddings": 1024, "rms_norm_eps": 1e-6, "hidden_act": "silu",
            **ARCHS[arch]}


def _count(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def measure(method: str, arch: str = "llama-tiny", lora_rank: int | None = None, grad_ckpt: bool = False,
            batch: int = 2, seq_len: int = 128) -> list[dict]:
    """Measured and predicted FLOPs of each phase of one micro-batch of `batch` examples."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    import planner
    from planner import flops, timecost

    torch.manual_seed(0)
    cfg_dict = _config(arch)
    cfg = LlamaConfig(**cfg_dict, attn_implementation="eager", pad_token_id=0)
    req = planner.PlanRequest(model=cfg_dict, method=method, seq_len=seq_len, batch_size=batch,
                              lora_rank=lora_rank, grad_ckpt=grad_ckpt)
    profile = planner.get_profile(method)
    copies = [c for c, _ in timecost.flop_copies(req)]
    seqs = timecost._sequences(req, profile)
    ids = torch.randint(1, cfg.vocab_size, (batch * seqs, seq_len))

    def lm(trainable: bool):
        m = LlamaForCausalLM(cfg)
        if trainable and lora_rank:
            from peft import LoraConfig, get_peft_model

            m = get_peft_model(m, LoraConfig(r=lora_rank, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"))
        m.train(trainable)
        if trainable and grad_ckpt:
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if not trainable:
            m.requires_grad_(False)
        return m

    def scalar(trainable: bool):
        m = LlamaForSequenceClassification(LlamaConfig(**cfg_dict, attn_implementation="eager", pad_token_id=0,
                                                       num_labels=1))
        m.train(trainable)
        if trainable and grad_ckpt:
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if not trainable:
            m.requires_grad_(False)
        return m

    models = {}
    for c in copies:
        models[c.role] = scalar(c.trainable) if c.scalar_head else lm(c.trainable)

    def scoring():
        with torch.no_grad():
            for c in copies:
                if c.trainable and not profile.scores_trainable_copies:
                    continue
                models[c.role](input_ids=ids).logits.float().sum()

    def forward_backward():
        loss = 0
        for c in copies:
            if c.trainable:
                loss = loss + models[c.role](input_ids=ids).logits.float().mean()
        loss.backward()

    rows = []
    for name, fn, predicted in [
        ("scoring", scoring, batch * flops.scoring_phase_flops(copies, seqs, seq_len, profile.scores_trainable_copies)),
        ("forward_backward", forward_backward,
         batch * flops.forward_backward_phase_flops(copies, seqs, seq_len, grad_ckpt)),
    ]:
        if name not in profile.phases or predicted == 0:
            continue
        measured = _count(fn)
        rows.append({"method": method, "arch": arch, "lora_rank": lora_rank, "grad_ckpt": grad_ckpt, "phase": name,
                     "copies": [c.role for c in copies if name == "forward_backward" and c.trainable
                                or name == "scoring" and (profile.scores_trainable_copies or not c.trainable)],
                     "batch": batch, "seq_len": seq_len, "measured": measured, "predicted": predicted,
                     "error": predicted / measured - 1})
    return rows


def main() -> int:
    import torch

    torch.set_num_threads(2)
    rows = []
    for arch in ARCHS:
        for method, rank, ckpt in CASES:
            rows += measure(method, arch, rank, ckpt)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "flops_check.json").write_text(json.dumps({"tolerance": TOLERANCE, "rows": rows}, indent=2) + "\n")
    lines = ["# planner.flops vs FlopCounterMode", "",
             "Per phase of one micro-batch (2 examples x 128 tokens), random weights, CPU, eager attention. "
             "`bench/flops_check.py`; tolerance 5%.", "",
             "| arch | method | LoRA | grad ckpt | phase | copies | measured GFLOP | predicted GFLOP | error |",
             "|---|---|---|---|---|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['arch']} | {r['method']} | {r['lora_rank'] or '-'} | {'yes' if r['grad_ckpt'] else 'no'} | "
                     f"{r['phase']} | {', '.join(r['copies'])} | {r['measured'] / 1e9:.3f} | {r['predicted'] / 1e9:.3f} | "
                     f"{r['error']:+.2%} |")
    (out / "flops_check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(abs(r["error"]) <= TOLERANCE for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
