"""Rollouts: sample responses with the KV cache, cut them at the first EOS, and read log-probs,
values and scores of the sampled tokens in one forward pass each.

Shapes: queries are left-padded (batch, Lq) so that every prompt ends at the same column and the
responses start together at column Lq; responses are (batch, Lr), padded on the right after their
first EOS. The response mask is 1 up to and including that EOS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from runners.rl.losses import entropy_from_logits


@dataclass
class Rollout:
    query_ids: torch.Tensor  # (B, Lq) left-padded
    query_mask: torch.Tensor  # (B, Lq)
    response_ids: torch.Tensor  # (B, Lr) pad after the first EOS
    response_mask: torch.Tensor  # (B, Lr) 1 on response tokens incl. the EOS
    ended_with_eos: torch.Tensor  # (B,) bool

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.response_mask], dim=1)

    def select(self, index: torch.Tensor) -> Rollout:
        return Rollout(*(t[index] for t in (self.query_ids, self.query_mask, self.response_ids,
                                            self.response_mask, self.ended_with_eos)))


def truncate_after_eos(
    response_ids: torch.Tensor, eos_token_id: int, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(response_ids with pad after the first EOS, mask incl. the EOS, ended_with_eos per row).

    generate() already pads finished rows, but a model can be asked for more tokens than it
    stopped at, and the caller may pass raw samples: cutting here makes the mask the single truth.
    """
    is_eos = response_ids == eos_token_id
    # Number of EOS seen strictly before each position: 0 means the position is still in the response.
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    mask = (eos_before == 0).long()
    ids = torch.where(mask.bool(), response_ids, torch.full_like(response_ids, pad_token_id))
    return ids, mask, is_eos.any(dim=1)


@torch.no_grad()
def sample(
    model,
    query_ids: torch.Tensor,
    query_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    eos_token_id: int,
    pad_token_id: int,
    row_seeds: list[int] | None = None,
) -> Rollout:
    """Sample one response per (left-padded) query with model.generate and its KV cache.

    Pure sampling from the temperature-scaled distribution with nucleus top_p: top_k is switched
    off (HF's generation default of 50 would silently change the distribution the log-probs are
    computed under), and the model's own generation_config (repetition penalty etc.) is not used.

    row_seeds (one per query, optional): each row draws from its own random generator, so a row's
    sample depends on its seed and its query only, not on the other rows of the batch or the global
    RNG (the generation stages seed by prompt index, so a resumed run samples what an uninterrupted
    one would). Same distribution: Gumbel-max over the temperature- and top_p-filtered logits.
    """
    from transformers import GenerationConfig, LogitsProcessorList

    seeded = row_seeds is not None
    if seeded and len(row_seeds) != query_ids.shape[0]:
        raise ValueError(f"row_seeds: {len(row_seeds)} seeds for {query_ids.shape[0]} queries")
    generation_config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        min_new_tokens=0,
        do_sample=not seeded,
        temperature=temperature if not seeded else 1.0,
        top_p=top_p if not seeded else 1.0,
        top_k=0 if not seeded else None,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        use_cache=True,
    )
    processors = LogitsProcessorList([RowSeededGumbel(row_seeds, temperature, top_p)]) if seeded else None
    output = model.generate(input_ids=query_ids, attention_mask=query_mask, generation_config=generation_config,
                            logits_processor=processors)
    response = output[:, query_ids.shape[1]:]
    if response.shape[1] == 0:
        response = torch.full((query_ids.shape[0], 1), pad_token_id, dtype=query_ids.dtype, device=query_ids.device)
    ids, mask, ended = truncate_after_eos(response, eos_token_id, pad_token_id)
    return Rollout(query_ids, query_mask, ids, mask, ended)


class RowSeededGumbel:
    """A logits processor for greedy decoding that turns it into sampling with one torch.Generator
    per row: temperature, then top_p (keeping at least one token), then Gumbel noise from the row's
    generator; the argmax of logits/T + Gumbel noise is a draw from softmax(logits/T)."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature: must be > 0, got {temperature}")
        self.seeds = [int(s) for s in seeds]
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
            cumulative = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
            drop_sorted = (cumulative - torch.softmax(sorted_scores, dim=-1)) >= self.top_p  # mass before it
            drop = torch.zeros_like(drop_sorted).scatter(1, order, drop_sorted)
            scores = scores.masked_fill(drop, float("-inf"))
        if self.generators is None:
            self.generators = []
            for seed in self.seeds:
                gen = torch.Generator(device=scores.device)
                gen.manual_seed(seed % (2**63))
                self.generators.append(gen)
        noise = torch.stack([
            torch.rand(scores.shape[1], generator=gen, device=scores.device, dtype=torch.float64)
            for gen in self.generators
        ]).clamp_(min=1e-20)
        gumbel = -torch.log(-torch.log(noise)).to(scores.dtype)
        return scores + gumbel


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip the left padding, as generate() uses: the first real token is position 0."""
    return (torch.cumsum(attention_mask, dim=1) - 1).clamp(min=0)


def response_logprobs(
    model, rollout: Rollout, temperature: float, with_entropy: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs of the sampled response tokens under model, from one forward pass over query+response.

    The logits are divided by the sampling temperature: the ratio and the KL must compare the
    distribution the tokens were drawn from. Logits at column t predict token t+1, hence the shift.
    Returns (logprobs (B, Lr), entropy per response position or None).
    """
    mask = rollout.attention_mask
    out = model(input_ids=rollout.input_ids, attention_mask=mask, position_ids=position_ids(mask), use_cache=False)
    lq = rollout.query_ids.shape[1]
    logits = out.logits[:, lq - 1 : -1, :].float() / temperature
    logprobs = torch.log_softmax(logits, dim=-1)
    token_logprobs = torch.gather(logprobs, 2, rollout.response_ids.unsqueeze(-1)).squeeze(-1)
    entropy = entropy_from_logits(logits) if with_entropy else None
    return token_logprobs, entropy


def score_head(model):
    """The linear head of an AutoModelForSequenceClassification (`score` for decoder models)."""
    for name in ("score", "classifier", "v_head"):
        head = getattr(model, name, None)
        if head is not None:
            return head
    raise ValueError(f"{type(model).__name__} has no score head (expected a sequence-classification model)")


def backbone(model):
    return getattr(model, model.base_model_prefix)


def token_scalars(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The scalar head applied at every position of a sequence-classification model: (B, L)."""
    hidden = backbone(model)(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask), use_cache=False
    ).last_hidden_state
    return score_head(model)(hidden).squeeze(-1).float()


class TokenScalars(torch.nn.Module):
    """A sequence-classification model as a module whose forward gives its scalar at every position.

    The value model is trained under DDP, whose gradient sync needs the forward to go through the
    wrapper: wrapping backbone + head in one module lets accelerator.prepare wrap exactly that.
    """

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return token_scalars(self.model, input_ids, attention_mask)


def response_values(value_model, rollout: Rollout) -> torch.Tensor:
    """V(state before response token t) for every response position: (B, Lr).

    value_model: a TokenScalars (possibly DDP-wrapped), called on query + response."""
    scalars = value_model(rollout.input_ids, rollout.attention_mask)
    lq = rollout.query_ids.shape[1]
    return scalars[:, lq - 1 : -1]


def sequence_scores(model, rollout: Rollout) -> torch.Tensor:
    """A reward model's score of each query+response: its scalar at the last non-pad token (B,).

    Computed here rather than through the model's own pooling, which in some versions looks for the
    first pad token and so breaks on left-padded queries.
    """
    mask = rollout.attention_mask
    scalars = token_scalars(model, rollout.input_ids, mask)
    last = mask.shape[1] - 1 - torch.argmax(mask.flip(1), dim=1)
    return scalars[torch.arange(scalars.shape[0], device=scalars.device), last]
