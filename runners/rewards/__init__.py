"""Rewards for the online methods (ppo, grpo, rloo): built-ins picked by name, functions from a
module or a file, and the check that calls a reward on two samples before a run starts.

    builtin.py  the built-in reward functions and their parameters (`builtin:exact_match`, ...)
    load.py     a spec's reward.function made callable (params bound), file rewards copied into the
                run directory, and check_reward_call (used by runners.launch.preflight)

docs/runners.md, section "Rewards", is the user's guide.
"""
