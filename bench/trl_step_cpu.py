"""A real TRL DPO training step on CPU: its peak memory next to the planner's.

    python bench/trl_step_cpu.py            # writes bench/results/trl_step_cpu.json and .md

Each row builds a catalogue config with random weights (depth and vocabulary as listed), trains
DPOTrainer (TRL 1.16, fp32, gradient checkpointing, precompute off) for 3 steps on pairs that fill
max_length, and tracks every CPU storage with torch's MemTracker: the peak over the 3 steps (the
first creates the Adam moments, so the later ones hold the most). The planner's figure is its largest phase without the overhead
term (CUDA context and allocator reserve, which a CPU has not).

What it showed (bench/results/trl_step_cpu.md): planner / measured is 0.93 and 1.00 with
vocabularies of 4,096 and 8,192, and 0.74-0.78 with SmolLM2's 49,152, where the gap (333 MiB)
is the same at 4 and 8 layers: it grows with the vocabulary, not the depth, so it sits in the LM
head path. The likely cause, from reading the code: on a device without Triton, TRL's fused head
falls back to whole-tile torch ops (trl/kernels/chunked_logprob.py, _forward_tile/_backward_tile)
that hold several [tokens x 32768] fp32 tiles at once (64 MiB each here), while the planner models
the CUDA kernel, which works in one tile in place. Only a GPU run can confirm the CUDA side
(bench/gpu_check.py).
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
MIB = 2**20
MAX_LENGTH = 128
BATCH = 2
# (catalogue config, layers, vocabulary override or None)
CASES = (
    ("HuggingFaceTB/SmolLM2-135M", 4, None),
    ("HuggingFaceTB/SmolLM2-135M", 8, None),
    ("HuggingFaceTB/SmolLM2-135M", 4, 4096),
    ("Qwen/Qwen2.5-0.5B", 2, 8192),
)


def build_model_dir(model_id: str, layers: int, vocab: int | None, out: Path, tokenizer_dir: Path) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    import planner

    cfg = dict(planner.load_model(model_id).config)
    model_type = cfg.pop("model_type")
    config = AutoConfig.for_model(model_type, **{k: v for k, v in cfg.items() if k != "architectures"})
    config.num_hidden_layers = layers
    if getattr(config, "layer_types", None):  # Qwen2 lists one attention type per layer
        config.layer_types = config.layer_types[:layers]
    if vocab:
        config.vocab_size = vocab
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)  # ids < 1024 fit every vocabulary here
    return out


def measure_dpo_step(model_dir: Path, work: Path) -> dict[str, float]:
    import torch
    from datasets import Dataset
    from torch.distributed._tools.mem_tracker import MemTracker
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    words = " ".join(f"w{i}" for i in range(400))
    # a short prompt and long answers, so that every sequence is cut at max_length
    rows = [{"prompt": words[:40], "chosen": words[i:i + 600], "rejected": words[i + 5:i + 605]} for i in range(16)]
    args = DPOConfig(output_dir=str(work / "out"), per_device_train_batch_size=BATCH, max_length=MAX_LENGTH,
                     max_steps=3, gradient_checkpointing=True, report_to="none", use_cpu=True, disable_tqdm=True,
                     save_strategy="no", learning_rate=1e-5, logging_steps=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=False)
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         optimizers=(optimizer, None))
    tokens = int(next(iter(trainer.get_train_dataloader()))["input_ids"].numel())
    tracker = MemTracker()
    tracker.track_external(trainer.model, trainer.ref_model, optimizer)

    class KeepLastStep(TrainerCallback):
        # MemTracker refuses a module called twice without a reset of its per-module stats
        # (checkpointing recomputes layers); its overall peak is kept across the reset
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step < args.max_steps:
                tracker.reset_mod_stats()

    trainer.add_callback(KeepLastStep())
    with tracker:
        trainer.train()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]
    out = {str(k).rsplit(".", 1)[-1].lower(): int(v) for k, v in peak.items()}
    out["tokens_per_step"] = tokens
    return out


def planner_phases(model_dir: Path) -> dict[str, dict[str, int]]:
    import planner

    plan = planner.estimate(planner.PlanRequest(model=planner.load_model(str(model_dir)), method="dpo",
                                                seq_len=MAX_LENGTH, batch_size=BATCH, precision="fp32",
                                                grad_ckpt=True), with_min_gpus=False)
    return {p["name"]: {k: v for k, v in p["components"].items() if k != "overhead"} for p in plan.phases}


def rows() -> list[dict]:
    import torch

    from runners.demo import tiny

    torch.set_num_threads(2)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tokenizer_dir = tiny.build_tiny_model(work / "tiny")
        for model_id, layers, vocab in CASES:
            model_dir = build_model_dir(model_id, layers, vocab, work / f"m{len(out)}", tokenizer_dir)
            t = time.time()
            measured = measure_dpo_step(model_dir, work)
            phases = planner_phases(model_dir)
            peak_name, peak = max(phases.items(), key=lambda kv: sum(kv[1].values()))
            planned = sum(peak.values())
            out.append({
                "config": model_id, "layers": layers, "vocab": vocab or "as published",
                "tokens_per_step": measured["tokens_per_step"],
                "measured_peak_bytes": measured["total"], "measured": measured,
                "planner_bytes": planned, "planner_phase": peak_name, "planner_components": peak,
                "ratio": round(planned / measured["total"], 4), "seconds": round(time.time() - t, 1),
            })
            print(out[-1]["config"], layers, vocab, out[-1]["ratio"], flush=True)
    return out


def write(data: list[dict]) -> None:
    import torch
    import transformers
    import trl

    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}
    (RESULTS / "trl_step_cpu.json").write_text(json.dumps({"meta": meta, "rows": data}, indent=2) + "\n")
    lines = [
        "# A real TRL DPO step on CPU against the planner",
        "",
        f"`python bench/trl_step_cpu.py`, {meta['when']}: torch {meta['torch']}, transformers "
        f"{meta['transformers']}, TRL {meta['trl']}. fp32, batch {BATCH} pairs, max_length {MAX_LENGTH}, "
        "gradient checkpointing, reference model loaded. MiB; planner = its largest phase without the overhead term.",
        "",
        "| config | layers | vocab | tokens/step | measured peak | of which TEMP | planner | planner phase | planner / measured |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data:
        lines.append(f"| {r['config']} | {r['layers']} | {r['vocab']} | {r['tokens_per_step']} | "
                     f"{r['measured_peak_bytes'] / MIB:.1f} | {r['measured'].get('temp', 0) / MIB:.1f} | "
                     f"{r['planner_bytes'] / MIB:.1f} | {r['planner_phase']} | {r['ratio']:.3f} |")
    (RESULTS / "trl_step_cpu.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    data = rows()
    write(data)
    print((RESULTS / "trl_step_cpu.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
