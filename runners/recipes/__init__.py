"""One training script per method, each run as `python -m runners.recipes.<method> --spec runs/<id>/spec.yaml`.

sft, rm, dpo, ipo (DPO with the IPO loss), kto, orpo, simpo (CPO with the SimPO loss), grpo, rloo.
Each reads top to bottom: start (spec, device, precision) -> data (errors before any model loads) ->
TRL config from spec.hparams -> tokenizer and model -> TRL trainer with our callbacks -> finish
(train, resume, save, result.json). The shared steps are in common.py; rewards.py holds reward
functions for grpo/rloo; callbacks.py the metrics, peak-memory and STOP-file callbacks; trl_compat.py
each method's TRL config class and the trainers that live in trl.experimental.
"""
