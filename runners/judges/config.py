"""LabelConfig: the rlaif-label recipe's hyper-parameters (spec.hparams), checked before launch like a
TRL config. The judge itself is spec.judge (runners.rundir.spec.JudgeSpec)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class LabelConfig:
    batch_size: int = field(
        default=8,
        metadata={"help": "Pairs judged per batch (each pair is two comparisons: both orders). The STOP file is "
                          "checked, labels.jsonl appended and a metrics row written after every batch."},
    )
    pairing: Literal["consecutive", "all"] = field(
        default="consecutive",
        metadata={"help": "Rows with K responses: 'consecutive' pairs (0,1), (2,3), ... (an odd last one is "
                          "left out); 'all' every pair i<j, up to max_pairs_per_prompt per prompt."},
    )
    max_pairs_per_prompt: int = field(
        default=6, metadata={"help": "With pairing 'all': at most this many pairs per prompt (in i<j order)."}
    )
    max_pairs: int = field(
        default=-1, metadata={"help": "Judge at most this many pairs (in data order); -1: all of them."}
    )
    max_length: int = field(
        default=2048,
        metadata={"help": "local / reward-model judges: longest input in tokens (the local judge cuts from the "
                          "left, keeping the question and the answer slot)."},
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size: at least 1")
        if self.pairing not in ("consecutive", "all"):
            raise ValueError(f"pairing: 'consecutive' or 'all', got {self.pairing!r}")
        if self.max_pairs_per_prompt < 1:
            raise ValueError("max_pairs_per_prompt: at least 1")
        if self.max_pairs == 0 or self.max_pairs < -1:
            raise ValueError("max_pairs: a positive number, or -1 for all pairs")
        if self.max_length < 16:
            raise ValueError("max_length: at least 16 tokens")
