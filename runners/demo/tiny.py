"""A tiny Llama-architecture model and tokenizer, built locally from bundled text.

Tests and the demo cannot reach the Hugging Face hub, so they train this model: a two-layer Llama
with random weights (fixed seed) and a byte-level BPE tokenizer trained on runners/data/corpus.txt
and the bundled demo data. Building it takes about a second; it is saved with save_pretrained, so
every trainer loads it by path like a hub model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

TINY_MODEL_DIR_ENV = "ALIGNPLAN_TINY_MODEL"
# Bump when the architecture, tokenizer or corpus changes, so cached builds are rebuilt.
TINY_VERSION = "4"
MARKER_FILE = "alignplan_tiny.json"

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
VOCAB_SIZE = 1024

# Each message renders as "<|role|>\n{content}<|eos|>\n". The prompt rendered with a generation
# prompt is a prefix of prompt + answer rendered, which is what TRL's preference tokenization needs.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + eos_token + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

ARCHITECTURE: dict[str, Any] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 512,
    "vocab_size": VOCAB_SIZE,
    "tie_word_embeddings": False,
}

# Hyper-parameters with which the tiny model visibly learns the demo preference on CPU within
# 20-40 steps. TRL's defaults (lr 1e-6, bf16, gradient checkpointing) are tuned for billion-parameter
# models: a randomly initialised 2-layer model needs a far larger step size to move in 30 steps.
DEMO_MAX_STEPS = 30
DEMO_HPARAMS: dict[str, Any] = {
    "learning_rate": 1e-3,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "per_device_train_batch_size": 8,
    "gradient_accumulation_steps": 1,
    "beta": 0.1,
    "max_length": 128,
}
# The online methods (GRPO, RLOO) on the tiny model: a 2-layer random model generates noise, so short
# completions and small groups keep the CPU demo under a minute.
DEMO_ONLINE_HPARAMS: dict[str, Any] = {"max_completion_length": 16, "num_generations": 4, "per_device_train_batch_size": 4}
# The RLHF demo (alignplan demo --method ppo): SFT -> RM -> PPO on the tiny model, each stage with a
# step size a random 2-layer model moves with; PPO scores 32 prompts of 16 tokens per iteration.
DEMO_RLHF_STEPS = {"sft": 30, "rm": 30, "ppo": 40}
DEMO_RLHF_HPARAMS: dict[str, dict[str, Any]] = {
    "sft": {"learning_rate": 1e-3, "max_length": 128},
    "rm": {"learning_rate": 1e-3, "max_length": 128},
    "ppo": {"learning_rate": 3e-3, "lr_scheduler_type": "constant", "per_device_train_batch_size": 32,
            "num_mini_batches": 2, "response_length": 16, "kl_coef": 0.1},
}
# RLAIF and CAI demos: the tiny policy answers the bundled prompts twice (24 tokens), a deterministic
# rule judge (no unsafe words, then the shorter answer) labels the pairs in both orders, DPO trains on
# them. CAI first critiques and revises against the bundled constitution and fine-tunes on the revisions.
DEMO_JUDGE = {"kind": "function", "function": "runners.judges.rules:prefer_safe_then_shorter"}
DEMO_SAMPLING = {"max_new_tokens": 24, "batch_size": 16}
DEMO_RLAIF_STAGES: dict[str, dict[str, Any]] = {
    "generate": {"hparams": {**DEMO_SAMPLING, "num_responses": 2}},
    "label": {"judge": DEMO_JUDGE},
    "dpo": {"max_steps": 30, "save_steps": 30, "hparams": {k: v for k, v in DEMO_HPARAMS.items()}},
}
DEMO_CAI_STAGES: dict[str, dict[str, Any]] = {
    "critique": {"hparams": {**DEMO_SAMPLING, "rounds": 1}},
    "sft": {"max_steps": 20, "save_steps": 20, "hparams": {"learning_rate": 1e-3, "max_length": 128}},
    "generate": {"hparams": {**DEMO_SAMPLING, "num_responses": 2}},
    "label": {"judge": DEMO_JUDGE},
    "dpo": {"max_steps": 30, "save_steps": 30, "hparams": {k: v for k, v in DEMO_HPARAMS.items()}},
}
# Which bundled sample each method trains on, and the reward function the online methods use with it
# (it rewards the marker the prompts ask for, so a tiny model can learn it).
DEMO_DATA_KIND: dict[str, str] = {
    "dpo": "preference", "ipo": "preference", "orpo": "preference", "simpo": "preference", "rm": "preference",
    "kto": "kto", "grpo": "prompts", "rloo": "prompts", "sft": "sft", "ppo": "prompts",
    # pipeline stages: generation and critique/revision answer prompts; labelling re-judges given pairs
    "generate": "prompts", "cai-generate": "prompts", "rlaif-label": "preference",
}
DEMO_REWARD = "runners.recipes.rewards:marker_reward"


def default_tiny_model_dir() -> Path:
    """$ALIGNPLAN_TINY_MODEL if set, else <runs root>/tiny-model: one copy for the demo, the app and
    `make app` (the runs root is $ALIGNPLAN_RUNS_DIR, else ./runs)."""
    env = os.environ.get(TINY_MODEL_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    from runners.paths import runs_root

    return runs_root() / "tiny-model"


def demo_dataset_path() -> Path:
    """The bundled preference pairs (prompt/chosen/rejected JSONL) the demo trains DPO on."""
    return DATA_DIR / "demo_preferences.jsonl"


def demo_data_paths() -> dict[str, Path]:
    """Bundled sample data for each data shape: preference, kto (unpaired), prompts, sft."""
    return {
        "preference": DATA_DIR / "demo_preferences.jsonl",
        "kto": DATA_DIR / "demo_kto.jsonl",
        "prompts": DATA_DIR / "demo_prompts.jsonl",
        "sft": DATA_DIR / "demo_sft.jsonl",
    }


def is_built(out_dir: str | Path) -> bool:
    marker = Path(out_dir) / MARKER_FILE
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("version") == TINY_VERSION
    except (OSError, ValueError):
        return False


class TinyModelDirError(ValueError):
    """The tiny model's folder is taken by something that is not a tiny-model build."""


def check_replaceable(out: Path) -> None:
    """Refuse a target that a (re)build would destroy: a file, or a folder with other contents.

    Only a missing folder, an empty one or one holding the tiny-model marker (any version) may be
    replaced; anything else could be the user's data.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise TinyModelDirError(f"{out}: exists and is a file, not a tiny-model build; choose an empty or new folder")
    if (out / MARKER_FILE).is_file() or not any(out.iterdir()):
        return
    raise TinyModelDirError(f"{out}: exists and is not a tiny-model build; choose an empty or new folder")


def build_tiny_model(out_dir: str | Path | None = None, seed: int = 0) -> Path:
    """Build the tiny model and tokenizer into out_dir (default: default_tiny_model_dir()).

    Idempotent: returns at once when out_dir already holds a build of this TINY_VERSION. The build
    goes to a temporary sibling directory that is renamed into place, so processes building at the
    same time never see a half-written model.
    """
    out = Path(out_dir) if out_dir is not None else default_tiny_model_dir()
    if is_built(out):
        return out
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-build-", dir=out.parent))
    try:
        tokenizer = train_tokenizer()
        model = random_llama(tokenizer, seed)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / MARKER_FILE).write_text(
            json.dumps({"version": TINY_VERSION, "seed": seed, **ARCHITECTURE}), encoding="utf-8"
        )
        if out.exists():
            if is_built(out):  # another process won the race
                return out
            check_replaceable(out)
            shutil.rmtree(out)
        try:
            staging.rename(out)
        except OSError:
            if not is_built(out):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def training_texts() -> list[str]:
    """Corpus lines plus every text field of the bundled data, so the demo text tokenizes compactly."""
    texts = (DATA_DIR / "corpus.txt").read_text(encoding="utf-8").splitlines()
    for path in demo_data_paths().values():
        for line in path.read_text(encoding="utf-8").splitlines():
            texts.extend(_strings_in(json.loads(line)))
    return [t for t in texts if t.strip()]


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings_in(v)]
    return []


def train_tokenizer():
    """Byte-level BPE: every string encodes (no unknown token), and decoding gives the text back."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = [PAD, BOS, EOS, *ROLE_TOKENS]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(training_texts(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=ROLE_TOKENS,
        model_max_length=ARCHITECTURE["max_position_embeddings"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def random_llama(tokenizer, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        **ARCHITECTURE,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Build the tiny demo model and tokenizer.")
    parser.add_argument("out_dir", nargs="?", default=None, help=f"default: ${TINY_MODEL_DIR_ENV} or ~/.cache")
    args = parser.parse_args(argv)
    print(build_tiny_model(args.out_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
