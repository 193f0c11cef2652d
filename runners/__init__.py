"""Running alignment. Each sub-package is one room, listed here so that a room imports only rooms
above it; no two rooms import each other (tests/runners/test_layering.py), docs/architecture.md.

    paths.py    where the repository and the runs live
    rewards/    reward functions for the online methods (built-ins, from a module or a file)
    rundir/     the run's spec, the launch decision and the run directory prepare() writes
    data/       loading and normalising training data; the bundled demo data sets
    rl/         our RL algorithms (PPO)
    judges/     RLAIF/CAI judges
    recipes/    one training script per method, their callbacks and TRL compatibility
    registry/   the SQLite run registry and the per-run supervisor that records outcomes
    launch/     checks before a run, then launch, follow, stop, resume and delete
    pipelines/  multi-stage runs (RLHF, RLAIF, Constitutional AI)
    demo/       the tiny local model and demo settings
    exports/    (empty) the planner's placement for verl, OpenRLHF and SLURM
    cli.py      the `alignplan run` / `runs` / `demo` commands
"""
