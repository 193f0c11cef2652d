"""Our PPO (runners/rl) next to TRL 1.11's trl.experimental.ppo.PPOTrainer, same task, same settings.

    .venv/bin/python bench/ppo_reference.py                 # writes bench/results/ppo_reference.{json,md,png}
    .venv/bin/python bench/ppo_reference.py --iterations 5 --seeds 0 --no-write   # a quick look

TRL 1.16 (our venv) has no PPO trainer; trl==1.11.0 is the last release with one. This script builds
a second venv for it, bench/.venv-trl111/ (git-ignored): torch==2.13.0 first (the local CPU wheel;
an unpinned torch would pull a multi-GB CUDA build), then trl==1.11.0 with the transformers pip
resolves for it (trl 1.11 asks only transformers>=4.56.2), and matplotlib for the plot. The TRL side
runs there as a subprocess (bench/ppo_reference_trl.py) and writes its rows as JSON; our side runs
here, in the main venv. The two run one after the other, each on TORCH_THREADS threads. On a
shared machine other work slows whichever side is running, so the seconds per iteration come from
a separate timing pass as well: short runs with the sides alternating (timing_pass()).

The task, identical on both sides:
- policy and reference: the tiny model (`alignplan tiny-model`: a random 2-layer Llama, 1024-token
  BPE tokenizer), fp32;
- prompts: runners/data/demo_prompts.jsonl (60 "Question: ...\\nAnswer:" lines), left-padded;
- reward model: a LlamaForSequenceClassification (num_labels=1) on the tiny config with weights set
  by hand (reward_model() below) so that its score is the mean over the sequence's tokens of a fixed
  per-token value r(t) ~ N(0, 1) (seed REWARD_SEED). Frozen. A known, dense objective the policy can
  learn within a few dozen iterations (emit high-r tokens); a randomly initialised classifier was
  tried first and its score did not move in 30 TRL iterations (noise of one arbitrary last-token
  function), so the curves said nothing about either trainer;
- value model: a trainable copy of the reward model on both sides;
- hyper-parameters: HPARAMS below, mapped onto each trainer's names (see the worker's docstring for
  TRL's). Our trainer's max_grad_norm is 0 (no clipping) and TRL's adam_epsilon is ours (1e-5),
  because TRL's PPO loop never clips gradients and TrainingArguments' epsilon is 1e-8.

Per iteration, each side's own log: score (mean reward-model score of the rollout) and KL (the k1
estimate log pi - log pi_ref summed over the response tokens, mean over the rollout, measured on
the rollout before the update: TRL's objective/kl), and wall-clock seconds (rollout + update).
Each seed in SEEDS runs on both sides; the curves are compared against the seed-to-seed spread,
since the two trainers draw different random numbers and no single pair of runs can match token
for token.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results"
TRL_VENV = ROOT / "bench" / ".venv-trl111"
TRL_WORKER = ROOT / "bench" / "ppo_reference_trl.py"
PROMPTS = ROOT / "runners" / "data" / "demo_prompts.jsonl"
TRL_VERSION = "1.11.0"
TORCH_VERSION = "2.13.0"
TORCH_THREADS = 1
REWARD_SEED = 1
SEEDS = (0, 1, 2)

HPARAMS = {
    "batch_size": 32,  # prompts per rollout (one process)
    "num_mini_batches": 2,  # optimizer steps per PPO epoch
    "ppo_epochs": 4,
    "iterations": 30,
    "response_length": 16,
    "temperature": 0.7,
    "kl_coef": 0.05,
    "cliprange": 0.2,
    "cliprange_value": 0.2,
    "vf_coef": 0.1,
    "gamma": 1.0,
    "lam": 0.95,
    "learning_rate": 1e-3,
    "adam_epsilon": 1e-5,
    "seed": 0,
}


# --- the TRL 1.11 venv ----------------------------------------------------------------------------

def trl_python() -> Path:
    return TRL_VENV / "bin" / "python"


def trl_venv_ready() -> bool:
    py = trl_python()
    if not py.exists():
        return False
    probe = subprocess.run(
        [str(py), "-c", "import torch, trl; print(torch.__version__.split('+')[0], trl.__version__)"],
        capture_output=True, text=True, start_new_session=True,
    )
    return probe.returncode == 0 and probe.stdout.split() == [TORCH_VERSION, TRL_VERSION]


def build_trl_venv(log) -> None:
    """python -m venv, then torch==2.13.0 alone (the local CPU wheel), then trl==1.11.0 with torch
    pinned again so the resolver cannot swap it, then matplotlib (optional: only for the plot)."""
    base = Path(sys.base_prefix) / "bin" / "python3"
    steps = [
        [str(base if base.exists() else sys.executable), "-m", "venv", "--clear", str(TRL_VENV)],
        [str(trl_python()), "-m", "pip", "install", f"torch=={TORCH_VERSION}"],
        [str(trl_python()), "-m", "pip", "install", f"trl=={TRL_VERSION}", f"torch=={TORCH_VERSION}"],
    ]
    for cmd in steps:
        print("+", " ".join(cmd), file=sys.stderr, flush=True)
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True, start_new_session=True)
    subprocess.run([str(trl_python()), "-m", "pip", "install", "matplotlib", f"torch=={TORCH_VERSION}"],
                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


# --- shared models ----------------------------------------------------------------------------------

def token_values(vocab_size: int):
    """r(t) for every token id: standard normal, seed REWARD_SEED."""
    import torch

    return torch.randn(vocab_size, generator=torch.Generator().manual_seed(REWARD_SEED))


def reward_model(policy_dir: Path):
    """A LlamaForSequenceClassification (the tiny config, num_labels=1) whose weights are set by hand
    so that its score of a sequence is the mean of r(t) over its non-pad tokens (prompt and response):

        embedding(t) = K e0 + A r(t) e2        (all other weights 0, norms 1)
        layer 0 attention: q = k = 0, so every position attends uniformly to its (unpadded) prefix;
            v picks coordinate 2 of the normed input, o writes it to coordinate 1:
            h_1 = mean_j A r(t_j) sqrt(H) / K    (RMSNorm divides by |x|/sqrt(H) ~ K/sqrt(H))
        MLPs and layer 1 add 0; the final norm scales by sqrt(H)/K again; score = h_1 K^2 / (H A).

    With A r(t) small against K the norms are near-constant and the score is mean_j r(t_j) to about
    1%. A known, dense, learnable objective (emit high-r tokens) that both trainers read through
    the same HF model class, and whose maximum (max_t r(t), about 3.2) is known.
    """
    import torch
    from transformers import AutoConfig, LlamaForSequenceClassification

    config = AutoConfig.from_pretrained(policy_dir)
    config.num_labels = 1
    config.architectures = ["LlamaForSequenceClassification"]
    model = LlamaForSequenceClassification(config)
    hidden, k, a = config.hidden_size, 1.0, 0.05
    r = token_values(config.vocab_size)
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.fill_(1.0 if "norm" in name else 0.0)
        model.model.embed_tokens.weight[:, 0] = k
        model.model.embed_tokens.weight[:, 2] = a * r
        attention = model.model.layers[0].self_attn
        attention.v_proj.weight[0, 2] = 1.0  # kv head 0, dim 0 <- coordinate 2
        attention.o_proj.weight[1, 0] = 1.0  # query head 0 (reads kv head 0), dim 0 -> coordinate 1
        model.score.weight[0, 1] = k * k / (hidden * a)
    return model

def build_models(work: Path, tiny_model: Path | None = None) -> tuple[Path, Path]:
    """The tiny policy (built with `alignplan tiny-model`, unless a build is given) and the frozen
    random reward model next to it."""
    policy = work / "tiny"
    if tiny_model is not None:
        shutil.copytree(tiny_model, policy)
    else:
        cli = Path(sys.executable).parent / "alignplan"
        cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "alignplan"]
        proc = subprocess.run([*cmd, "tiny-model", str(policy)], capture_output=True, text=True, start_new_session=True)
        if proc.returncode != 0:
            raise SystemExit(f"alignplan tiny-model failed: {proc.stderr.strip()}")

    reward = work / "reward"
    reward_model(policy).save_pretrained(reward)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(policy).save_pretrained(reward)
    return policy, reward


# --- the two sides ----------------------------------------------------------------------------------

def run_trl(cfg: dict, work: Path, log) -> dict:
    cfg_path = work / f"trl-config-{cfg['hparams']['seed']}.json"
    out_path = work / f"trl-rows-{cfg['hparams']['seed']}.json"
    cfg_path.write_text(json.dumps(cfg), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": str(TORCH_THREADS), "TRL_EXPERIMENTAL_SILENCE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.pop("PYTHONPATH", None)
    subprocess.run([str(trl_python()), str(TRL_WORKER), str(cfg_path), str(out_path)], cwd=work, env=env,
                   stdout=log, stderr=subprocess.STDOUT, check=True, start_new_session=True)
    return json.loads(out_path.read_text(encoding="utf-8"))


def run_ours(cfg: dict, work: Path) -> dict:
    """runners.rl.ppo_trainer.PPOTrainer in this process, with the same models, prompts and settings."""
    import accelerate
    import torch
    import transformers
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from runners.rl.ppo_config import PPOConfig
    from runners.rl.ppo_trainer import PPOHooks, PPOTrainer

    hp = cfg["hparams"]
    torch.set_num_threads(int(cfg.get("threads", 1)))
    tokenizer = AutoTokenizer.from_pretrained(cfg["policy_path"])
    prompts = [json.loads(line)["prompt"] for line in open(cfg["prompts_path"], encoding="utf-8") if line.strip()]
    torch.manual_seed(hp["seed"])
    policy = AutoModelForCausalLM.from_pretrained(cfg["policy_path"], dtype=torch.float32)
    ref_policy = AutoModelForCausalLM.from_pretrained(cfg["policy_path"], dtype=torch.float32)
    value_model = AutoModelForSequenceClassification.from_pretrained(cfg["reward_path"], num_labels=1, dtype=torch.float32)
    reward = AutoModelForSequenceClassification.from_pretrained(cfg["reward_path"], num_labels=1, dtype=torch.float32)
    config = PPOConfig(
        learning_rate=hp["learning_rate"],
        lr_scheduler_type="constant",
        adam_epsilon=hp["adam_epsilon"],
        weight_decay=0.0,
        max_grad_norm=0.0,  # TRL 1.11's PPO loop does not clip
        per_device_train_batch_size=hp["batch_size"],
        num_mini_batches=hp["num_mini_batches"],
        gradient_accumulation_steps=1,
        ppo_epochs=hp["ppo_epochs"],
        cliprange=hp["cliprange"],
        cliprange_value=hp["cliprange_value"],
        vf_coef=hp["vf_coef"],
        gamma=hp["gamma"],
        lam=hp["lam"],
        whiten_rewards=False,
        kl_coef=hp["kl_coef"],
        adaptive_kl=False,
        kl_estimator="k1",
        response_length=hp["response_length"],
        temperature=hp["temperature"],
        top_p=1.0,
        missing_eos_penalty=None,
        value_model="reward",
        seed=hp["seed"],
        max_steps=hp["iterations"],
        save_steps=hp["iterations"] + 1,
        sample_every=hp["iterations"] + 1,
        output_dir=None,
    )
    rows: list[dict] = []

    class Recorder(PPOHooks):
        def __init__(self) -> None:
            self.last = time.perf_counter()

        def on_log(self, trainer, row):
            now = time.perf_counter()
            ratio = trainer.first_ratio
            first = float((ratio - 1).abs().max()) if ratio is not None and ratio.numel() else None
            rows.append({"iteration": row["step"], "score": row["score"], "kl": row["kl"],
                         "seconds": now - self.last, "first_ratio_max_dev": first, "metrics": row})
            self.last = now

    trainer = PPOTrainer(config, policy, ref_policy, value_model, reward, tokenizer, prompts,
                         accelerator=Accelerator(cpu=True), hooks=(hooks := Recorder()))
    started = time.perf_counter()
    hooks.last = started
    trainer.train()
    return {
        "side": "ours",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "accelerate": accelerate.__version__,
                     "trainer": "runners.rl.ppo_trainer (this repository)"},
        "threads": torch.get_num_threads(),
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
    }


def timing_pass(policy: Path, reward: Path, work: Path, log, rounds: int, iterations: int) -> dict:
    """Seconds per iteration on a shared machine: short runs (seed 0), the two sides alternating
    and swapping which goes first each round, so that load from other processes falls on both.
    Per run, the median over its iterations after the first; then the median over rounds."""
    cfg = {"policy_path": str(policy), "reward_path": str(reward), "prompts_path": str(PROMPTS),
           "threads": TORCH_THREADS, "hparams": {**HPARAMS, "iterations": iterations, "seed": 0}}
    out: list[dict] = []
    for i in range(rounds):
        entry: dict = {"order": ["trl", "ours"] if i % 2 == 0 else ["ours", "trl"]}
        for side in entry["order"]:
            entry[f"{side}_loadavg_1min_before"] = os.getloadavg()[0]
            run = run_trl(cfg, work, log) if side == "trl" else run_ours(cfg, work)
            entry[side] = statistics.median(r["seconds"] for r in run["rows"][1:])
        entry["ratio_trl_over_ours"] = entry["trl"] / entry["ours"]
        print(f"timing round {i + 1}: trl {entry['trl']:.2f}s/it, ours {entry['ours']:.2f}s/it", file=sys.stderr, flush=True)
        out.append(entry)
    return {
        "iterations_per_run": iterations,
        "rounds": out,
        "median_seconds_per_iteration": {side: statistics.median(e[side] for e in out) for side in ("trl", "ours")},
        "median_ratio_trl_over_ours": statistics.median(e["ratio_trl_over_ours"] for e in out),
    }


def interpret(result: dict) -> str:
    """The reading, from the numbers of this run (so a rerun cannot leave stale prose)."""
    s, n = result["summary"], result["config"]["iterations"]
    ours, trl = s["ours"], s["trl"]
    tail = max(1, n // 6)
    d_score = mean([abs(a - b) for a, b in zip(ours["score"], trl["score"], strict=True)])
    sd_score = mean([(a + b) / 2 for a, b in zip(ours["score_sd"], trl["score_sd"], strict=True)])
    d_kl = mean([abs(a - b) for a, b in zip(ours["kl"], trl["kl"], strict=True)])
    sd_kl = mean([(a + b) / 2 for a, b in zip(ours["kl_sd"], trl["kl_sd"], strict=True)])
    first_dev = max((r.get("first_ratio_max_dev") or 0.0) for run in result["runs"]["ours"] for r in run["rows"])
    kl1 = max(abs(run["rows"][0]["kl"]) for side in ("ours", "trl") for run in result["runs"][side])
    text = [
        f"Score rises on both sides from {ours['score'][0]:+.3f} (ours) / {trl['score'][0]:+.3f} (TRL) at iteration 1 "
        f"to {mean(ours['score'][-tail:]):+.3f} / {mean(trl['score'][-tail:]):+.3f} over the last {tail} iterations, "
        f"while the KL to the reference grows to {mean(ours['kl'][-tail:]):.2f} / {mean(trl['kl'][-tail:]):.2f} nats per "
        f"response. Averaged over the {n} iterations, the gap between the two mean curves is {d_score:.3f} in score "
        f"and {d_kl:.3f} in KL, against a seed-to-seed standard deviation of {sd_score:.3f} and {sd_kl:.3f}: "
        f"the two trainers are {'indistinguishable at this number of seeds' if d_score <= 1.5 * sd_score and d_kl <= 1.5 * sd_kl else 'further apart than their seed-to-seed spread: look for a cause'}.",
        f"At iteration 1 the KL is at most {kl1:.1e} on either side (policy = reference), and our first "
        f"micro-batch's ratio is 1 within {first_dev:.1e} in every iteration (rollout and update log-probs agree).",
    ]
    timing = result.get("timing")
    if timing:
        med = timing["median_seconds_per_iteration"]
        text.append(
            f"Seconds per iteration (alternating short runs, medians): ours {med['ours']:.2f}, TRL {med['trl']:.2f} "
            f"(TRL / ours = {timing['median_ratio_trl_over_ours']:.2f}). The machine's 2 cores were shared with other "
            "work (1-minute load averages are in the JSON), so take the ratio, not the absolute times. "
            "Where TRL's extra time goes (cProfile, 6 iterations, same settings, measured once by hand): its loop "
            "calls gc.collect() twice per iteration, 8.7 s of its 18.0 s in train(); the rest (generate, forwards, "
            "backward, AdamW) took 9.3 s against our whole train() at 8.7 s. A fixed cost per iteration that "
            "dominates on a tiny model and fades on a real one."
        )
    text.append(
        "What differs between the implementations, and could open a gap at other settings: (1) TRL takes the "
        "rollout log-probs from generate()'s scores and ours from a separate forward pass (same distribution, "
        "different rounding; ours costs one more policy forward per rollout); (2) when a response ends with EOS "
        "before response_length, TRL puts the score one position after the EOS and trains the value there too "
        "(its `sequence_lengths_p1`), ours puts it on the EOS with V = 0 after it; here responses almost never "
        "end with EOS (random 1024-token policy, 16 tokens), so this does not show; (3) TRL finds the end of a "
        "response by the first pad token and masks attention wherever the pad id appears, ours by the first EOS "
        "with an explicit mask (differs only if the policy samples the pad token); (4) TRL steps one AdamW over "
        "policy and value together, ours one per model (the same updates without gradient clipping, which TRL's "
        "loop never does and which is off on our side here; our default clips each model at 1.0); (5) the data "
        "order, sampling and mini-batch shuffles draw different random numbers, so no single run pair matches "
        "token for token: the curves are compared as means over seeds."
    )
    return "\n\n".join(text)


# --- report -----------------------------------------------------------------------------------------

def mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def spread(xs):
    xs = [x for x in xs if x is not None]
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def summarise(runs: dict[str, list[dict]], iterations: int) -> dict:
    """Per side: the per-iteration mean and seed-to-seed standard deviation of score and KL, and the
    mean seconds per iteration (the first iteration, which warms up, reported apart)."""
    out = {}
    for side, seeds in runs.items():
        curves = {"score": [], "score_sd": [], "kl": [], "kl_sd": []}
        for i in range(iterations):
            for key in ("score", "kl"):
                vals = [run["rows"][i][key] for run in seeds if i < len(run["rows"])]
                curves[key].append(mean(vals))
                curves[f"{key}_sd"].append(spread(vals))
        secs = [r["seconds"] for run in seeds for r in run["rows"]]
        later = [r["seconds"] for run in seeds for r in run["rows"][1:]]
        out[side] = {
            **curves,
            "seconds_per_iteration": mean(later),
            "seconds_first_iteration": mean([run["rows"][0]["seconds"] for run in seeds if run["rows"]]),
            "seconds_all_mean": mean(secs),
        }
    return out


def fmt(x, nd=3, sign=True):
    if x is None:
        return "-"
    return f"{x:+.{nd}f}" if sign else f"{x:.{nd}f}"


def write_markdown(result: dict, path: Path) -> None:
    s, h = result["summary"], result["config"]["hparams"]
    ours_v, trl_v = result["versions"]["ours"], result["versions"]["trl"]
    n = result["config"]["iterations"]
    lines = [
        "# Our PPO next to TRL 1.11's PPOTrainer",
        "",
        f"Written by `bench/ppo_reference.py` on {result['date']} ({result['machine']}, "
        f"{TORCH_THREADS} torch thread per side, sides run one after the other).",
        "",
        f"- ours: runners/rl, torch {ours_v['torch']}, transformers {ours_v['transformers']}",
        f"- TRL: trl {trl_v['trl']} `trl.experimental.ppo.PPOTrainer`, torch {trl_v['torch']}, "
        f"transformers {trl_v['transformers']}, accelerate {trl_v['accelerate']} (bench/.venv-trl111)",
        f"- task: tiny random Llama policy, 60 demo prompts, frozen random reward model "
        f"(score = mean of r(token) over the sequence, r ~ N(0,1)), value model = trainable copy of it; seeds {list(result['config']['seeds'])}",
        "- settings: " + ", ".join(f"{k} {v}" for k, v in h.items() if k != "seed"),
        f"- inputs: tiny model version {result['inputs']['tiny_model'].get('version')}, prompts sha256 "
        f"{result['inputs']['prompts_sha256'][:12]}, repository at {result['inputs']['git_head'][:10]}"
        + (f" ({result['inputs']['note']})" if result["inputs"].get("note") else ""),
        "",
        "Score: mean reward-model score of the iteration's rollout. KL: sum over response tokens of "
        "log pi - log pi_ref (k1), mean over the rollout, measured before the iteration's update "
        "(TRL's `objective/kl`). Mean over seeds, +- the seed-to-seed standard deviation.",
        "",
        "| iter | score ours | score TRL 1.11 | KL ours | KL TRL 1.11 |",
        "|---:|---:|---:|---:|---:|",
    ]
    for i in range(n):
        lines.append(
            f"| {i + 1} | {fmt(s['ours']['score'][i])} ± {fmt(s['ours']['score_sd'][i], 3, False)} "
            f"| {fmt(s['trl']['score'][i])} ± {fmt(s['trl']['score_sd'][i], 3, False)} "
            f"| {fmt(s['ours']['kl'][i], 4)} ± {fmt(s['ours']['kl_sd'][i], 4, False)} "
            f"| {fmt(s['trl']['kl'][i], 4)} ± {fmt(s['trl']['kl_sd'][i], 4, False)} |"
        )
    lines += [
        "",
        "| seconds per iteration | ours | TRL 1.11 |",
        "|---|---:|---:|",
        f"| first iteration | {fmt(s['ours']['seconds_first_iteration'], 2, False)} | "
        f"{fmt(s['trl']['seconds_first_iteration'], 2, False)} |",
        f"| later iterations (mean over the seeds' runs) | {fmt(s['ours']['seconds_per_iteration'], 2, False)} | "
        f"{fmt(s['trl']['seconds_per_iteration'], 2, False)} |",
    ]
    timing = result.get("timing")
    if timing:
        med = timing["median_seconds_per_iteration"]
        lines.append(f"| timing pass: median of {len(timing['rounds'])} alternating runs of "
                     f"{timing['iterations_per_run']} iterations | {med['ours']:.2f} | {med['trl']:.2f} |")
    lines.append("")
    if result.get("interpretation"):
        lines += ["## Reading", "", result["interpretation"].strip(), ""]
    if result.get("plot"):
        lines += [f"![score and KL per iteration]({Path(result['plot']).name})", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def plot(result_path: Path, png: Path, log) -> bool:
    """Drawn in the TRL venv, which has matplotlib (ours does not)."""
    code = (
        "import json,sys\n"
        "import matplotlib; matplotlib.use('Agg')\n"
        "import matplotlib.pyplot as plt\n"
        "r=json.load(open(sys.argv[1])); s=r['summary']\n"
        "fig,ax=plt.subplots(1,2,figsize=(10,4))\n"
        "for side,lab,c in (('ours','ours (runners/rl)','C0'),('trl','TRL 1.11','C1')):\n"
        "  for k,a in (('score',ax[0]),('kl',ax[1])):\n"
        "    y=s[side][k]; sd=s[side][k+'_sd']; x=range(1,len(y)+1)\n"
        "    a.plot(x,y,label=lab,color=c)\n"
        "    a.fill_between(x,[m-d for m,d in zip(y,sd)],[m+d for m,d in zip(y,sd)],color=c,alpha=0.2)\n"
        "ax[0].set_title('score (mean over seeds, +-1 sd)'); ax[1].set_title('KL to reference, nats/response (k1)')\n"
        "for a in ax: a.set_xlabel('iteration'); a.legend()\n"
        "fig.tight_layout(); fig.savefig(sys.argv[2],dpi=100)\n"
    )
    proc = subprocess.run([str(trl_python()), "-c", code, str(result_path), str(png)], stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True)
    return proc.returncode == 0 and png.exists()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=HPARAMS["iterations"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--sides", nargs="+", default=["trl", "ours"], choices=["trl", "ours"])
    parser.add_argument("--no-write", action="store_true", help="print the summary, write nothing under bench/results")
    parser.add_argument("--tiny-model", type=Path, default=None,
                        help="an existing `alignplan tiny-model` build to use (default: build one)")
    parser.add_argument("--timing-rounds", type=int, default=3,
                        help="extra short runs, sides alternating, for the seconds per iteration (0: none)")
    parser.add_argument("--timing-iterations", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (models, logs, raw rows)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="ppo-reference-"))
    log_path = work / "log.txt"
    with open(log_path, "a", encoding="utf-8") as log:
        if "trl" in args.sides and not trl_venv_ready():
            print(f"building {TRL_VENV} (log: {log_path})", file=sys.stderr, flush=True)
            build_trl_venv(log)
        policy, reward = build_models(work, args.tiny_model)
        inputs = {
            "prompts_sha256": hashlib.sha256(PROMPTS.read_bytes()).hexdigest(),
            "tiny_model": json.loads((policy / "alignplan_tiny.json").read_text(encoding="utf-8")),
            "git_head": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                       text=True).stdout.strip(),
        }
        hparams = {**HPARAMS, "iterations": args.iterations}
        runs: dict[str, list[dict]] = {side: [] for side in args.sides}
        for seed in args.seeds:
            cfg = {"policy_path": str(policy), "reward_path": str(reward), "prompts_path": str(PROMPTS),
                   "threads": TORCH_THREADS, "hparams": {**hparams, "seed": seed}}
            for side in args.sides:
                started = time.perf_counter()
                load = os.getloadavg()[0]
                run = run_trl(cfg, work, log) if side == "trl" else run_ours(cfg, work)
                runs[side].append({"seed": seed, "loadavg_1min_before": load, **run})
                print(f"{side} seed {seed}: {len(run['rows'])} iterations in {time.perf_counter() - started:.1f}s; "
                      f"score {run['rows'][0]['score']:+.3f} -> {run['rows'][-1]['score']:+.3f}, "
                      f"kl {run['rows'][0]['kl']:+.4f} -> {run['rows'][-1]['kl']:+.4f}", file=sys.stderr, flush=True)

        timing = None
        if set(runs) == {"trl", "ours"} and args.timing_rounds > 0:
            timing = timing_pass(policy, reward, work, log, args.timing_rounds, args.timing_iterations)

    summary = summarise(runs, args.iterations) if set(runs) == {"trl", "ours"} else None
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "command": "python bench/ppo_reference.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {"iterations": args.iterations, "seeds": args.seeds, "hparams": hparams,
                   "torch_threads": TORCH_THREADS, "reward_seed": REWARD_SEED,
                   "reward": "mean over non-pad tokens of r(t), r ~ N(0,1) seeded by reward_seed (bench/ppo_reference.py reward_model())", "prompts": str(PROMPTS.relative_to(ROOT))},
        "inputs": inputs,
        "versions": {side: runs[side][0]["versions"] for side in runs},
        "summary": summary,
        "timing": timing,
        "runs": runs,
    }
    if summary is not None:
        result["interpretation"] = interpret(result)
    if args.no_write or summary is None:
        print(json.dumps({side: [[r["score"], r["kl"], r["seconds"]] for r in runs[side][0]["rows"]] for side in runs}))
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        json_path = RESULTS / "ppo_reference.json"
        json_path.write_text(json.dumps(result, indent=1), encoding="utf-8")
        png = RESULTS / "ppo_reference.png"
        with open(log_path, "a", encoding="utf-8") as log:
            if plot(json_path, png, log):
                result["plot"] = str(png.relative_to(ROOT))
                json_path.write_text(json.dumps(result, indent=1), encoding="utf-8")
        write_markdown(result, RESULTS / "ppo_reference.md")
        print(f"wrote {json_path}, {RESULTS / 'ppo_reference.md'}", file=sys.stderr)
    if args.keep:
        print(f"work folder: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
