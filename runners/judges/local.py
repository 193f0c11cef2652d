"""A local causal LM as the judge: the pairwise prompt is read to the model, and the verdict is the
model's next-token distribution over the two answer labels, not generated text.

    p_first = softmax(logit[label A], logit[label B])[0]      (A is the first position)

Which tokens: ' A' and ' B' when the tokenizer makes each one token (Llama 3, Qwen, Mistral, GPT-2
tokenizers do), so the prompt ends at 'Answer:' and the label follows with its space; otherwise the
bare 'A' and 'B' after a prompt that ends in a space (the tiny test tokenizer splits ' A' into
'Ġ' + 'A'). With a chat template the prompt is the user turn and the label starts the assistant
turn, so the bare labels are tried first. `answer_tokens` says which were chosen.

Batched (left padding, one forward pass per batch), no gradients; winner 'first' when p_first > 0.5,
'second' when < 0.5, a tie at exactly 0.5.
"""

from __future__ import annotations

from runners.judges.base import (
    LABELS,
    Comparison,
    Judge,
    JudgeError,
    Verdict,
    read_prompt_template,
    render_prompt,
)


def choose_answer_tokens(tokenizer, prefer_bare: bool = False) -> tuple[str, list[int]]:
    """(the prefix put before each label, the two single-token ids); JudgeError if neither form works."""
    forms = ("", " ") if prefer_bare else (" ", "")
    for prefix in forms:
        ids = [tokenizer.encode(prefix + label, add_special_tokens=False) for label in LABELS]
        if all(len(i) == 1 for i in ids) and ids[0] != ids[1]:
            return prefix, [ids[0][0], ids[1][0]]
    raise JudgeError(
        "judge.model: the tokenizer makes neither ' A'/' B' nor 'A'/'B' single tokens; a local judge reads "
        "its verdict from those two tokens' probabilities"
    )


class LocalLMJudge(Judge):
    kind = "local"

    def __init__(self, model, tokenizer, template: str, max_length: int = 2048, batch_size: int = 8,
                 use_chat_template: bool | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template
        self.max_length = max_length
        self.batch_size = batch_size
        self.chat = bool(tokenizer.chat_template) if use_chat_template is None else use_chat_template
        self.prefix, self.label_ids = choose_answer_tokens(tokenizer, prefer_bare=self.chat)
        self.answer_tokens = [self.prefix + label for label in LABELS]

    @classmethod
    def load(cls, path: str, template: str | None = None, *, device: str = "cpu", dtype=None,
             trust_remote_code: bool = False, **kwargs) -> LocalLMJudge:
        """The model and tokenizer at path; template: the prompt text (default: the bundled pairwise one)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
        return cls(model.to(device), tokenizer, template or read_prompt_template(None), **kwargs)

    def text_for(self, comparison: Comparison) -> str:
        """What the model reads; the label token comes next."""
        text = render_prompt(self.template, comparison)
        if self.chat:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
        # Bare labels follow the space that ' A' would have carried.
        return text if self.prefix == " " else text + " "

    def compare_batch(self, comparisons: list[Comparison]) -> list[Verdict]:
        out: list[Verdict] = []
        for start in range(0, len(comparisons), self.batch_size):
            out.extend(self._batch(comparisons[start:start + self.batch_size]))
        return out

    def label_logits(self, texts: list[str]):
        """The two labels' logits at the next position of each text: a (len(texts), 2) float32 tensor,
        and the number of input tokens of each text."""
        import torch

        tok = self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        try:
            # Left truncation keeps the question at the end, where the label is read.
            side_trunc, tok.truncation_side = tok.truncation_side, "left"
            enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length,
                      add_special_tokens=not self.chat)
        finally:
            tok.padding_side = side
            tok.truncation_side = side_trunc
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(input_ids=enc["input_ids"].to(device),
                                attention_mask=enc["attention_mask"].to(device)).logits[:, -1, :]
        picked = logits[:, self.label_ids].float().cpu()
        return picked, enc["attention_mask"].sum(dim=1).tolist()

    def _batch(self, comparisons: list[Comparison]) -> list[Verdict]:
        import torch

        picked, lengths = self.label_logits([self.text_for(c) for c in comparisons])
        probs = torch.softmax(picked, dim=-1)[:, 0].tolist()
        verdicts = []
        for p_first, n in zip(probs, lengths, strict=True):
            winner = "first" if p_first > 0.5 else "second" if p_first < 0.5 else None
            verdicts.append(Verdict(winner, p_first=float(p_first), tokens=int(n), input_tokens=int(n)))
        return verdicts
