"""Where things live on disk: the repository root and the runs root.

The lowest module of runners/: it imports nothing of ours, so every room (the run directory, the
registry, the launcher, the demo) may import it.
"""

from __future__ import annotations

import os
from pathlib import Path

RUNS_DIR_ENV = "ALIGNPLAN_RUNS_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent


def runs_root(root: str | Path | None = None) -> Path:
    """Where run directories live: ``root``, else $ALIGNPLAN_RUNS_DIR, else ./runs (absolute)."""
    chosen = root if root is not None else os.environ.get(RUNS_DIR_ENV) or "runs"
    return Path(chosen).expanduser().resolve()
