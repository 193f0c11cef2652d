"""The run directory and its spec: what a run is (RunSpec), how it is launched (the decision), and
the folder that holds both and everything the run writes.

    spec.py      RunSpec: method, model, data, LoRA, devices, hyper-parameters; SpecError
    hparams.py   reading integers, numbers and true/false values from spec.hparams
    devices.py   what this machine can run on: visible GPUs, CPU cores and RAM
    decide.py    the launch decision (CPU, one GPU, DDP, ZeRO, FSDP2) from the planner; accelerate.yaml
    prepare.py   prepare(): spec -> runs/<id>/ with the files below (registering it is the registry's step)
    reader.py    RunDir: reads what a run wrote
    timing.py    a step's predicted speed (plan.json `time`) and its measured speed (result.json `throughput`)

runs/<id>/
    spec.yaml        RunSpec.dump(): what the recipe reads
    accelerate.yaml  the accelerate setup chosen for the devices found (see decide.decide())
    command.sh       the exact launch command, runnable by hand: ``bash command.sh [--resume]``
    command.json     the same command as an argument list (argv, cwd, env) for the launcher
    plan.json        planner request and estimate, the devices found and the decision taken; `time`: one
                     step's predicted time, tokens/s and generation time on this device (timing.py)
    stdout.log       the command's output (written by the launcher)
    metrics.jsonl    one JSON line per logging step (written by the recipe)
    result.json      final status, metrics and measured peak memory (written by the recipe); `throughput`:
                     measured step time, tokens/s, generation, MFU achieved, beside the prediction
    checkpoints/     unless spec.output_dir says otherwise
    STOP             created by launch.stop() (or a signal to the supervisor): the recipe saves a checkpoint and exits 0
    supervisor.json  the supervisor's pids and, at the end, the exit code (what a rebuilt registry re-adopts from)
"""
