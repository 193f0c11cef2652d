"""The local LM judge and the reward-model judge on the tiny model."""

from __future__ import annotations

import pytest

from runners.judges.base import Comparison, read_prompt_template

PAIRS = [
    ("Question: How do I remember names?\nAnswer:", " Repeat the name aloud when you hear it.", " Bananas are loud."),
    ("Question: What is a good way to learn to juggle?\nAnswer:", " Start with two balls.", " My cat likes jazz."),
    ("Question: Can you tell me how to paint a small room?\nAnswer:", " Tape the edges, then roll.", " No."),
]


@pytest.fixture(scope="module")
def local_judge(tiny_model_dir):
    import torch

    from runners.judges.local import LocalLMJudge

    torch.manual_seed(0)
    return LocalLMJudge.load(str(tiny_model_dir), batch_size=4, max_length=512)


@pytest.mark.slow
def test_local_judge_reads_two_single_tokens_and_their_probabilities(local_judge) -> None:
    import torch

    # The tiny tokenizer splits ' A' into 'Ġ' + 'A', so the bare labels are used (after a chat
    # template's assistant header: the tiny tokenizer has one).
    assert local_judge.answer_tokens == ["A", "B"]
    assert [local_judge.tokenizer.decode([i]) for i in local_judge.label_ids] == ["A", "B"]
    comparisons = [Comparison(p, a, b) for p, a, b in PAIRS] + [Comparison(p, b, a) for p, a, b in PAIRS]
    verdicts = local_judge.compare_batch(comparisons)
    for v in verdicts:
        assert 0.0 < v.p_first < 1.0 and v.winner == ("first" if v.p_first > 0.5 else "second") and v.tokens > 50
    # Batched with left padding = one at a time: the probability is read at each text's own last token.
    for c, v in zip(comparisons, verdicts, strict=True):
        alone, _ = local_judge.label_logits([local_judge.text_for(c)])
        assert torch.softmax(alone, dim=-1)[0, 0].item() == pytest.approx(v.p_first, abs=1e-5)
    # Swapping the two replies changes what the model reads, and so its probability.
    flipped = [abs(verdicts[k].p_first - verdicts[k + 3].p_first) for k in range(3)]
    assert max(flipped) > 1e-4


@pytest.mark.slow
def test_local_judge_prompt_is_the_users_file(tiny_model_dir, tmp_path, local_judge) -> None:
    custom = tmp_path / "mine.txt"
    custom.write_text("Q {prompt} | A {first} | B {second} | better:")
    template = read_prompt_template(custom)
    text = local_judge.__class__(local_judge.model, local_judge.tokenizer, template).text_for(
        Comparison("why {x}?", "one", "two"))
    assert "Q why {x}? | A one | B two | better:" in text


@pytest.mark.slow
def test_reward_model_judge_and_min_margin(tiny_model_dir) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from runners.judges.reward_model import RewardModelJudge

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)  # a fresh head, spread so the scores differ
    comparisons = [Comparison(p, a, b) for p, a, b in PAIRS]
    plain = RewardModelJudge(model, tokenizer, min_margin=0.0).compare_batch(comparisons)
    diffs = [v.extra["score_first"] - v.extra["score_second"] for v in plain]
    assert all(abs(d) > 0 for d in diffs)
    assert [v.winner for v in plain] == ["first" if d > 0 else "second" for d in diffs]
    for v, d in zip(plain, diffs, strict=True):
        assert v.p_first == pytest.approx(1 / (1 + torch.exp(torch.tensor(-d)).item()), rel=1e-5)
    # A margin between the smallest and the largest difference: the small ones become ties.
    margin = sorted(abs(d) for d in diffs)[1]
    tied = RewardModelJudge(model, tokenizer, min_margin=margin).compare_batch(comparisons)
    assert [v.winner for v in tied] == [None if abs(d) < margin else v.winner for d, v in zip(diffs, plain, strict=True)]
    assert sum(v.winner is None for v in tied) == 1
    # Order does not matter to a reward model: the swapped question gives the mirrored verdict.
    swapped = RewardModelJudge(model, tokenizer).compare_batch([Comparison(p, b, a) for p, a, b in PAIRS])
    assert [v.winner for v in swapped] == [{"first": "second", "second": "first"}[v.winner] for v in plain]
