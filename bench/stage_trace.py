"""The inference stages of the RLAIF and CAI pipelines, traced on CPU, against the planner's stage profiles.

    python bench/stage_trace.py          # writes bench/results/stage_trace.json and .md

A small Llama-like config with random weights (bench/ppo_trace.py's "llama-like", fp32, CPU), run
through the code the recipes run, under torch's MemTracker (ppo_trace.PhaseTracker: the largest
total of live CPU bytes while a phase runs), against the same phase of planner.estimate(...) without
the overhead term (CUDA context and allocator reserve, which a CPU has not):

  generate      runners/recipes/generate.py: the Sampler of the recipe, one generate call of
                batch x K sequences (sampler.chunk = batch_size * num_responses), each prompt
                repeated K times with its own row seed (runners/rl/rollout.py sample(), the
                row-seeded Gumbel sampler). Planner: method "generate", batch_size = prompts,
                num_generations = K, completion_len = max_new_tokens, seq_len = prompt + completion.
  rlaif-label   runners/judges/local.py LocalLMJudge.label_logits: one batched no-grad forward
                (the model's own use_cache, i.e. a KV cache of everything read, and logits at every
                position) over prompt + response A + response B + the verdict request, both orders
                of each pair (the recipe's judge batch is 2 x LabelConfig.batch_size). Planner:
                method "rlaif-label", batch_size = pairs, seq_len = prompt + completion,
                completion_len = the response length.
  cai-generate  runners/recipes/cai_generate.py process(): the answer, then the critique (prompt +
                answer + critique request), then the revision (+ critique + revision request), three
                generate calls of batch sequences each, one after the other. Planner: method
                "cai-generate", batch_size = prompts, completion_len = max_new_tokens,
                seq_len = prompt + completion.

Token-id "texts" (ppo_trace.IdTokenizer, extended with what the Sampler and the judge ask of a
tokenizer) fix every length exactly; prompts are of uneven lengths (left padding). The random models
almost never sample the EOS id, so responses run to max_new_tokens.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_spec = importlib.util.spec_from_file_location("ppo_trace", ROOT / "bench" / "ppo_trace.py")
ppo_trace = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ppo_trace)

RESULTS = ROOT / "bench" / "results"
MIB = 2**20
STAGES = ("generate", "rlaif-label", "cai-generate")
REQUEST_TOKENS = 8  # the critique / revision request and the judge's verdict request, in tokens

SHAPE = dict(prompt_len=64, new_tokens=64, batch=4, num_responses=2)
TINY_SHAPE = dict(prompt_len=24, new_tokens=16, batch=2, num_responses=2)


class StageTokenizer(ppo_trace.IdTokenizer):
    """IdTokenizer plus what the generate recipe's Sampler and the local judge call."""

    bos_token = None
    chat_template = None
    truncation_side = "right"

    def __init__(self, eos_token_id: int, pad_token_id: int = 0) -> None:
        super().__init__(eos_token_id, pad_token_id)
        self.pad_token = str(pad_token_id)
        self.eos_token = str(eos_token_id)

    def __call__(self, texts, return_tensors="pt", padding=True, truncation=False, max_length=None,
                 add_special_tokens=True):
        if truncation and max_length:
            texts = [" ".join(t.split()[-max_length:]) for t in texts]
        return super().__call__(texts, return_tensors=return_tensors, padding=padding)

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.batch_decode([ids], skip_special_tokens)[0]


def build(name: str):
    import torch
    from transformers import AutoModelForCausalLM

    cfg = ppo_trace.hf_config(name)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    return cfg, model, StageTokenizer(eos_token_id=cfg.vocab_size - 1)


def _request(vocab: int, seed: int) -> str:
    import torch

    g = torch.Generator().manual_seed(seed)
    return " ".join(str(int(t)) for t in torch.randint(1, vocab - 1, (REQUEST_TOKENS,), generator=g))


def _sampler(model, tokenizer, shape: dict[str, int]):
    from runners.recipes.generate import Sampler, SamplingConfig

    return Sampler(model, tokenizer, "cpu", SamplingConfig(max_new_tokens=shape["new_tokens"], batch_size=shape["batch"]))


def _width(tokenizer, texts: list[str]) -> int:
    return max(len(t.split()) for t in texts)


def trace_generate(name: str, shape: dict[str, int]) -> dict[str, Any]:
    """The generate recipe's process(): each prompt K times, one generate call of batch x K sequences."""
    from runners.recipes.generate import row_seed

    cfg, model, tok = build(name)
    sampler = _sampler(model, tok, shape)
    k = shape["num_responses"]
    sampler.chunk = shape["batch"] * k  # as generate.train sets it
    prompts = ppo_trace.prompts_for(shape, cfg.vocab_size, shape["batch"])
    texts = [p for p in prompts for _ in range(k)]
    seeds = [row_seed(0, i, j) for i in range(len(prompts)) for j in range(k)]
    tracker = ppo_trace.PhaseTracker()
    tracker.watch(model)
    with tracker:
        tracker.set_phase("generation")
        out = sampler.sample(texts, seeds)
        tracker.set_phase(None)
    prompt = _width(tok, prompts)
    completion = max(s["tokens"] for s in out)
    return {"phases": {"generation": tracker.peaks["generation"]},
            "request": dict(method="generate", batch_size=shape["batch"], num_generations=k,
                            completion_len=completion, seq_len=prompt + completion),
            "shape": {"prompt_len": prompt, "completion_len": completion, "sequences_per_call": len(texts)}}


def trace_rlaif_label(name: str, shape: dict[str, int]) -> dict[str, Any]:
    """LocalLMJudge.label_logits over both orders of `batch` pairs: one forward of 2 x batch texts."""
    import torch

    from runners.judges.local import LocalLMJudge

    cfg, model, tok = build(name)
    judge = LocalLMJudge.__new__(LocalLMJudge)  # the real scoring path, without a text tokenizer's label search
    judge.model, judge.tokenizer, judge.max_length, judge.batch_size = model, tok, 4096, 2 * shape["batch"]
    judge.chat, judge.prefix, judge.label_ids = False, " ", [5, 6]
    prompts = ppo_trace.prompts_for(shape, cfg.vocab_size, shape["batch"])
    g = torch.Generator().manual_seed(1)
    verdict = _request(cfg.vocab_size, 2)

    def response() -> str:
        return " ".join(str(int(t)) for t in torch.randint(1, cfg.vocab_size - 1, (shape["new_tokens"],), generator=g))

    texts = []
    for p in prompts:
        a, b = response(), response()
        texts += [f"{p} {a} {b} {verdict}", f"{p} {b} {a} {verdict}"]  # both orders, as the recipe judges
    tracker = ppo_trace.PhaseTracker()
    tracker.watch(model)
    with tracker:
        tracker.set_phase("scoring")
        picked, lengths = judge.label_logits(texts)
        tracker.set_phase(None)
    assert picked.shape == (len(texts), 2)
    prompt = _width(tok, prompts)
    return {"phases": {"scoring": tracker.peaks["scoring"]},
            "request": dict(method="rlaif-label", batch_size=shape["batch"], completion_len=shape["new_tokens"],
                            seq_len=prompt + shape["new_tokens"]),
            "shape": {"prompt_len": prompt, "completion_len": shape["new_tokens"], "judge_input": max(lengths),
                      "sequences_per_call": len(texts)}}


def trace_cai_generate(name: str, shape: dict[str, int]) -> dict[str, Any]:
    """cai_generate's process() with the policy as critic and reviser, one round: answer, critique,
    revision, each a generate call of `batch` sequences; the contexts are built as critique_text and
    revision_text build them (plain format), in token ids."""
    from runners.recipes.generate import row_seed

    cfg, model, tok = build(name)
    sampler = _sampler(model, tok, shape)
    prompts = ppo_trace.prompts_for(shape, cfg.vocab_size, shape["batch"])
    idx = range(len(prompts))
    critique_req, revision_req = _request(cfg.vocab_size, 3), _request(cfg.vocab_size, 4)
    tracker = ppo_trace.PhaseTracker()
    tracker.watch(model)
    calls: dict[str, dict[str, int]] = {}
    with tracker:
        tracker.set_phase("generation")
        first = sampler.sample(prompts, [row_seed(0, i, 0) for i in idx])
        calls["answer"] = dict(tracker.peaks["generation"])
        crit_texts = [f"{p} {a['text']} {critique_req}" for p, a in zip(prompts, first, strict=True)]
        critiques = sampler.sample(crit_texts, [row_seed(0, i, 1) for i in idx])
        calls["critique"] = dict(tracker.peaks["generation"])
        rev_texts = [f"{c} {v['text']} {revision_req}" for c, v in zip(crit_texts, critiques, strict=True)]
        revisions = sampler.sample(rev_texts, [row_seed(0, i, 2) for i in idx])
        tracker.set_phase(None)
    prompt = _width(tok, prompts)
    completion = max(s["tokens"] for s in first + critiques + revisions)
    return {"phases": {"generation": tracker.peaks["generation"]},
            "request": dict(method="cai-generate", batch_size=shape["batch"], completion_len=completion,
                            seq_len=prompt + completion),
            "shape": {"prompt_len": prompt, "completion_len": completion,
                      "revision_context": _width(tok, rev_texts) + completion, "sequences_per_call": len(prompts),
                      "peak_after_call_mib": {k: round(v["total"] / MIB, 2) for k, v in calls.items()}}}


TRACES = {"generate": trace_generate, "rlaif-label": trace_rlaif_label, "cai-generate": trace_cai_generate}


def plan_phases(name: str, request: dict[str, Any]) -> dict[str, dict[str, int]]:
    import planner
    from planner.models import spec_from_config

    spec = spec_from_config(ppo_trace.hf_config(name).to_dict(), name)
    plan = planner.estimate(planner.PlanRequest(model=spec, precision="fp32", **request), with_min_gpus=False)
    return {p["name"]: {k: v for k, v in p["components"].items() if k != "overhead"} for p in plan.phases}


def compare(name: str, stage: str, shape: dict[str, int] = SHAPE) -> dict[str, Any]:
    started = time.time()
    traced = TRACES[stage](name, shape)
    planned = plan_phases(name, traced["request"])
    phases = []
    for p, t in traced["phases"].items():
        comps = planned[p]
        phases.append({"phase": p, "traced_bytes": t["total"], "planned_bytes": sum(comps.values()),
                       "ratio": round(sum(comps.values()) / t["total"], 4), "traced": t, "planned": comps})
    return {"config": name, "stage": stage, "request": traced["request"], "shape": traced["shape"],
            "phases": phases, "seconds": round(time.time() - started, 1)}


def rows(name: str = "llama-like", shape: dict[str, int] = SHAPE) -> list[dict]:
    import torch

    torch.set_num_threads(2)
    out = []
    for stage in STAGES:
        out.append(compare(name, stage, shape))
        print(stage, [(p["phase"], p["ratio"]) for p in out[-1]["phases"]], f"{out[-1]['seconds']} s", flush=True)
    return out


def write(data: list[dict]) -> None:
    import torch
    import transformers

    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "shape": SHAPE}
    (RESULTS / "stage_trace.json").write_text(json.dumps({"meta": meta, "rows": data}, indent=2) + "\n")
    lines = [
        "# The RLAIF and CAI inference stages, traced on CPU, against the planner's stage profiles",
        "",
        f"`python bench/stage_trace.py`, {meta['when']}: torch {meta['torch']}, transformers "
        f"{meta['transformers']}. Llama-like, fp32, hidden 256, 4 layers, GQA 8/4 heads, vocabulary 8,192; "
        f"{SHAPE['batch']} prompts of up to {SHAPE['prompt_len']} tokens (left-padded), {SHAPE['new_tokens']} new "
        f"tokens; generate K = {SHAPE['num_responses']}; the judge reads both orders of {SHAPE['batch']} pairs "
        f"(prompt + two {SHAPE['new_tokens']}-token responses + a {REQUEST_TOKENS}-token request); CAI one round "
        f"({REQUEST_TOKENS}-token critique and revision requests). MemTracker's live CPU bytes at the phase's "
        "peak; planner = that phase without the overhead term. MiB.",
        "",
        "| stage | phase | traced | planned | planned / traced |",
        "|---|---|---|---|---|",
    ]
    for r in data:
        for p in r["phases"]:
            lines.append(f"| {r['stage']} | {p['phase']} | {p['traced_bytes'] / MIB:.1f} | "
                         f"{p['planned_bytes'] / MIB:.1f} | {p['ratio']:.3f} |")
    (RESULTS / "stage_trace.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    data = rows()
    write(data)
    print((RESULTS / "stage_trace.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
