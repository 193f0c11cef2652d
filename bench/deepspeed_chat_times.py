"""The planner's time estimate against DeepSpeed-Chat's published RLHF step-3 times (docs/time-cost.md).

DeepSpeed-Chat blog (microsoft/DeepSpeed blogs/deepspeed-chat/README.md, April 2023), Tables 1, 2 and 4:
PPO on 131.9k prompts of 256 tokens with 256 generated tokens each (one epoch, ppo_epochs 1), OPT actor
and reference, OPT-350M reward and critic, ZeRO-3, gradient checkpointing, per-device batch 16
(training_scripts/opt/single_node/run_13b.sh), Hybrid Engine generation; cost at Azure's price
(their $ / GPU-hour works out to $4.0 for A100-80GB). Prints one row per published figure.

    .venv/bin/python bench/deepspeed_chat_times.py [MFU ...]
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _opt(h: int, layers: int, heads: int, ffn: int, proj: int | None = None) -> dict:
    """OPT config.json facts (facebook/opt-* on the Hugging Face hub)."""
    return {"model_type": "opt", "hidden_size": h, "num_hidden_layers": layers, "num_attention_heads": heads,
            "ffn_dim": ffn, "vocab_size": 50272, "max_position_embeddings": 2048, "word_embed_proj_dim": proj or h,
            "do_layer_norm_before": proj is None, "tie_word_embeddings": True}


MODELS = {"OPT-6.7B": "facebook/opt-6.7b", "OPT-13B": "facebook/opt-13b",
          "OPT-30B": _opt(7168, 48, 56, 28672), "OPT-66B": _opt(9216, 64, 72, 36864)}
OPT_350M = _opt(1024, 24, 16, 4096, proj=512)
# (actor, GPU, count, published hours, published USD, where)
ROWS = [
    ("OPT-6.7B", "A100-80GB", 8, 4.1, 132, "Table 1"), ("OPT-13B", "A100-80GB", 8, 9.0, 290, "Table 1"),
    ("OPT-30B", "A100-80GB", 8, 18.0, 580, "Table 1"), ("OPT-66B", "A100-80GB", 8, 50.4, 1620, "Table 1 (2.1 days)"),
    ("OPT-13B", "A100-40GB", 8, 10.8, None, "Table 4"),
    ("OPT-13B", "A100-80GB", 64, 1.25, 320, "Table 2"), ("OPT-30B", "A100-80GB", 64, 4.0, 1024, "Table 2"),
    ("OPT-66B", "A100-80GB", 64, 7.5, 1920, "Table 2"),
]


def run(mfu: float | None) -> list[dict]:
    import planner
    from planner import timecost

    prices = timecost.PriceTable({"A100-80GB": 4.0, "A100-40GB": 4.0}, as_of="2023-04", source="DeepSpeed-Chat, Azure")
    with tempfile.TemporaryDirectory() as d:
        rm = Path(d) / "opt-350m.json"
        rm.write_text(json.dumps(OPT_350M))
        out = []
        for actor, gpu, n, hours, usd, where in ROWS:
            req = planner.PlanRequest(model=MODELS[actor], method="ppo", seq_len=512, completion_len=256, batch_size=16,
                                      gpu=gpu, gpus=8, nodes=n // 8, zero=3, grad_ckpt=True,
                                      reward_model=str(rm), value_model=str(rm))
            t = timecost.estimate_time(req, timecost.Work(examples=131_900, seq_len=512), engine="deepspeed-hybrid",
                                       update_epochs=1, prices=prices, mfu=mfu)
            ph = {p["name"]: p["seconds"] / 3600 for p in t["stages"][0]["phases"]}
            out.append({"actor": actor, "gpus": f"{n} x {gpu}", "where": where, "published_hours": hours,
                        "published_usd": usd, "hours": t["wall_hours"], "usd": t["cost"], "ratio": t["wall_hours"] / hours,
                        "mfu": t["mfu"], "phases_hours": ph})
    return out


def main() -> int:
    mfus = [float(a) for a in sys.argv[1:]] or [None, 0.2]
    for mfu in mfus:
        print(f"MFU {mfu or 'default'}")
        for r in run(mfu):
            ph = ", ".join(f"{k} {v:.2f}" for k, v in r["phases_hours"].items())
            usd = "-" if r["published_usd"] is None else f"{r['usd']:.0f} vs {r['published_usd']}"
            print(f"  {r['actor']:<9} {r['gpus']:<15} est {r['hours']:6.2f} h vs {r['published_hours']:5.2f} h "
                  f"(x{r['ratio']:.2f}); USD {usd}; {ph}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
