"""Judges for RLAIF and Constitutional AI: a judge compares two responses to a prompt; labelling asks it
in both orders and keeps the consistent verdicts as preference pairs (docs/judges.md).

    base.py          Comparison, Verdict, Judge; the prompt file; parse_verdict for written answers
    local.py         a causal LM, read from the next-token probabilities of the labels A and B
    endpoint.py      an OpenAI-compatible chat API: key from a named env var, retries, answer cache
    reward_model.py  a one-output sequence classifier; a tie below min_margin
    function.py      a Python function (prompt, first, second) -> 'first' | 'second' | None
    rules.py         deterministic rule judges for tests and demos
    labelling.py     pairs, both orders, position consistency, the report, DPO pairs
    config.py        LabelConfig: the rlaif-label recipe's hparams
    build.py         make_judge(spec.judge, ...)
    constitution.py  constitutions (principles with critique and revision requests) for CAI
    prompts/         the default pairwise and constitutional judge prompts

This room imports nothing else of runners; the rlaif-label recipe (runners/recipes/rlaif_label.py) runs it.
"""
