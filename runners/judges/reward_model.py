"""A reward model as the judge: a sequence classifier with one output scores prompt + response; the
higher score wins, and a difference below `min_margin` is a tie. p_first is the Bradley-Terry
probability sigmoid(score_first - score_second). Scores do not depend on the order the two
responses are shown in, so a reward-model judge is position-consistent by construction; asking
both orders costs nothing extra because each (prompt, response) is scored once per batch.
"""

from __future__ import annotations

import math

from runners.judges.base import Comparison, Judge, Verdict


class RewardModelJudge(Judge):
    kind = "reward-model"

    def __init__(self, model, tokenizer, min_margin: float = 0.0, max_length: int = 2048, batch_size: int = 8) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.min_margin = min_margin
        self.max_length = max_length
        self.batch_size = batch_size
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id

    @classmethod
    def load(cls, path: str, *, device: str = "cpu", dtype=None, trust_remote_code: bool = False,
             **kwargs) -> RewardModelJudge:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, dtype=dtype, trust_remote_code=trust_remote_code
        )
        return cls(model.to(device), tokenizer, **kwargs)

    def text_for(self, prompt: str, response: str) -> str:
        """Plain prompt + response, as the rm recipe trains on prompt/chosen/rejected strings."""
        return prompt + response

    def scores(self, texts: list[str]) -> list[float]:
        import torch

        out: list[float] = []
        tok = self.tokenizer
        device = next(self.model.parameters()).device
        for start in range(0, len(texts), self.batch_size):
            enc = tok(texts[start:start + self.batch_size], return_tensors="pt", padding=True, truncation=True,
                      max_length=self.max_length)
            with torch.no_grad():
                logits = self.model(input_ids=enc["input_ids"].to(device),
                                    attention_mask=enc["attention_mask"].to(device)).logits
            out.extend(float(x) for x in logits[:, 0].float().cpu())
        return out

    def compare_batch(self, comparisons: list[Comparison]) -> list[Verdict]:
        texts: dict[str, int] = {}
        for c in comparisons:
            for response in (c.first, c.second):
                texts.setdefault(self.text_for(c.prompt, response), len(texts))
        scored = self.scores(list(texts))
        verdicts = []
        for c in comparisons:
            s1 = scored[texts[self.text_for(c.prompt, c.first)]]
            s2 = scored[texts[self.text_for(c.prompt, c.second)]]
            diff = s1 - s2
            winner = None if abs(diff) < self.min_margin or diff == 0 else ("first" if diff > 0 else "second")
            verdicts.append(Verdict(winner, p_first=1.0 / (1.0 + math.exp(-diff)),
                                    extra={"score_first": s1, "score_second": s2}))
        return verdicts
