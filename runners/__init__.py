"""Running alignment: each sub-package is one room, and imports point down this list only.

    paths.py    where the repository and the runs live (imported by every room)
    rundir/     the run's spec, the launch decision and the run directory prepare() writes
    data/       loading and normalising training data; the bundled demo data sets
    recipes/    one TRL training script per method, their callbacks and TRL compatibility
    registry/   the SQLite run registry and the per-run supervisor that records outcomes
    launch/     checks before a run, then launch, follow, stop, resume and delete
    demo/       the tiny local model and demo settings
    pipelines/  multi-stage runs (RLHF, RLAIF, Constitutional AI); rl/ our RL algorithms (PPO);
    judges/     RLAIF/CAI judges; exports/ verl, OpenRLHF and SLURM exports
    cli.py      the `alignplan run` / `runs` / `demo` commands
"""
