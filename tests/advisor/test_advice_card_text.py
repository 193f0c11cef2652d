"""The advice card: the GRPO caveat matches its preset (beta = 0), the next steps hold no empty step
when there is no data to collect (PPO on episode rewards), and the data guidance of GRPO and PPO is
shown in the text card (the Advise page: tests/app/test_app_advise.py)."""

from __future__ import annotations

import re

import advisor

GRPO = {"reward_signal": "verifiable", "task": "code_math"}
PPO_EPISODE = {"reward_signal": "episode", "task": "multi_turn"}


def _caveat(rec, cid):
    return next(c["text"] for c in rec.caveats if c["id"] == cid)


def test_the_grpo_caveat_agrees_with_its_preset():
    rec = advisor.advise(GRPO)
    assert rec.method == "grpo" and rec.preset["hparams"]["beta"] == 0.0
    text = _caveat(rec, "reward_hacking")
    assert "beta = 0" in text and "no KL term" in text
    assert "the KL penalty to the reference keeps" not in text  # the old wording: a KL anchor the preset turns off


def test_ppo_text_card_numbers_its_steps_without_an_empty_one():
    rec = advisor.advise(PPO_EPISODE)
    assert rec.method == "ppo" and all(s.strip() for s in rec.next_steps)  # the empty data step is dropped
    text = advisor.render_text(rec)
    steps = text.split("\nNext steps\n", 1)[1].split("\n\n", 1)[0]
    numbers = [int(m) for m in re.findall(r"^  (\d+)\. \S", steps, flags=re.M)]
    assert numbers == list(range(1, len([s for s in rec.next_steps if s.strip()]) + 1))
    assert not re.search(r"^  \d+\. *$", steps, flags=re.M)


def test_grpo_and_ppo_text_cards_carry_their_data_guidance():
    for answers in (GRPO, PPO_EPISODE):
        rec = advisor.advise(answers)
        text = advisor.render_text(rec)
        data = text.split("\nData (", 1)[1].split("\n\n", 1)[0]
        assert rec.data_guidance["notes"] and rec.data_guidance["notes"][0].split()[0] in data

