"""One process of test_parameters_held_counts_an_fsdp2_shard: python fsdp2_shard_count.py RANK WORLD PORT OUT_DIR.

A standalone script rather than torch.multiprocessing.spawn, which re-imports __main__ (under pytest
that may be an AppTest script left behind by an earlier test)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from runners.recipes.callbacks import parameters_held


def main(rank: int, world: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 10, bias=False))
        fully_shard(model)  # a 1-D mesh over the CPU processes
        Path(out_dir, f"{rank}.json").write_text(json.dumps(parameters_held(model)))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
