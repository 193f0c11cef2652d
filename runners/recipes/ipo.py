"""IPO: identity preference optimization (Azar et al. 2023) = DPO with loss_type ["ipo"].

    python -m runners.recipes.ipo --spec runs/<id>/spec.yaml [--resume]

Same trainer, data and reference handling as the DPO recipe; only the loss differs (a squared loss
on the log-ratio margin, target 1/(2*beta), which does not saturate on deterministic preferences).
"""

from __future__ import annotations

from runners.recipes import common, dpo
from runners.recipes.trl_compat import FORCED_SETTINGS


def train(argv: list[str] | None = None) -> int:
    return dpo.train(argv, forced=FORCED_SETTINGS["ipo"], method="ipo")


def main(argv: list[str] | None = None) -> int:
    return common.run_main(train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
