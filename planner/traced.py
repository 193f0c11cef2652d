"""trace_plan(request) -> TracedPlan: the method's real step, traced under fake tensors.

For what the analytic plan cannot foresee (a new architecture, a remote-code model, an unusual
setup), the real model is built from its config under torch's FakeTensorMode (tensors carry shape,
dtype and device but no storage, so an 8B model costs no RAM) and the method's step runs on it as
the trainer runs it. torch's MemTracker follows every tensor storage as it is created and freed
(it supports fake tensors: entered inside the fake mode, it counts each fake storage's bytes), and
the largest live total of each phase is kept with its breakdown in the analytic plan's components:

  weights            MemTracker's PARAM + BUFFER
  gradients          GRAD (what the parameters' .grad hold)
  optimizer_states   OPT (everything created inside optimizer.step: moments, Kahan buffers, step)
  logits             tensors over the vocabulary, and everything the LM head and loss allocate
  kv_cache           the keys and values the generation's cache holds
  activations        the rest: what autograd saves, backward's temporaries, the inputs
  overhead           0: a trace has no CUDA context or allocator reserve (the analytic plan's own term)

Two steps run; the second is recorded (Adam moments exist from the first step on). The step is
read from the method profile (planner/methods.py): which copies exist and train, whether the step
generates, which copies score without gradients, how many sequences an example puts through the
policy; only the scalar loss formula is per family (_LOSSES), and it holds no memory worth counting.

torch, transformers and peft are imported here, inside the functions: planner stays torch-free.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from planner.errors import PlannerError
from planner.estimate import COMPONENTS, PlanRequest, _active_options, _context_len, validate
from planner.methods import MethodProfile, get_profile

LOSS_IMPLEMENTATIONS = ("fused", "chunked", "materialised")
# The fused/chunked loss's projection tile: TRL 1.16's fused LM head (TOKEN_CHUNK_SIZE x its
# vocabulary chunk), as the analytic plan's terms.fused_logits_bytes counts it.
LOSS_TOKEN_TILE = 4096
LOSS_VOCAB_TILE = 32768
LOSS_FOLD_COLUMNS = 1024  # the Triton fold's block width
SAMPLING_TEMPERATURE = 0.7  # any value but 1 makes the division a new tensor, as in our PPO
TRACED_STEPS = 2
# Generation: the decode is traced for its last steps only. The cache before them is grown to
# its full length in one concatenation per layer (what a DynamicCache holds after that many decode
# steps), so a 2,048-token decode costs two forwards, not 2,048.
DECODE_STEPS_TRACED = 2


@dataclass
class TracedPlan:
    """Per-phase, per-component bytes of the traced step, in the shape of Plan.to_dict()'s
    breakdown (phases: name, stage, components, total_bytes, is_peak; peak_phase,
    peak_bytes_per_gpu, components at the peak)."""

    method: str
    model: str
    loss: str
    fake: bool
    phases: list[dict[str, Any]]
    peak_phase: str
    peak_bytes_per_gpu: int
    components: dict[str, int]
    seconds: float
    tokens: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- checks ---------------------------------------------------------------------------------------


def loss_implementation(req: PlanRequest, profile: MethodProfile) -> str:
    """The request's loss (PlanRequest.loss when it has one), else what the runner does: the method
    trainer's fused LM head, or --chunked-loss, else materialised logits."""
    loss = getattr(req, "loss", None)
    if loss is None:
        return "fused" if profile.fused_lm_head or req.chunked_loss else "materialised"
    if loss not in LOSS_IMPLEMENTATIONS:
        raise PlannerError("loss", f"{loss!r} is not accepted; accepted: {', '.join(LOSS_IMPLEMENTATIONS)}")
    return loss


def check_traceable(req: PlanRequest, profile: MethodProfile) -> None:
    """What a trace on one device cannot do, named before anything is built."""
    if profile.stages:
        raise PlannerError("method", f"{req.method} runs in stages ({', '.join(profile.stages)}); "
                                     "trace each stage's method instead (e.g. --method dpo)")
    if req.gpus * req.nodes > 1 or req.zero or req.offload:
        raise PlannerError("gpus", "a traced plan runs one GPU's step without sharding or offload; "
                                   "use gpus 1, nodes 1, zero 0 and no offload")
    if req.quant:
        raise PlannerError("quant", "quantized weights (bitsandbytes) cannot run under fake tensors; "
                                    "trace without --quant")
    for saver in ("activation_offload", "optimizer_in_backward"):  # torchtune's memory savers
        if getattr(req, saver, False):
            raise PlannerError(saver, "is not traced (the trace runs the TRL-style step); trace without it")
    if req.optimizer not in ("adamw", "sgd"):
        raise PlannerError("optimizer", f"{req.optimizer!r} is not traced; accepted: adamw, sgd")


def _hf_config(req: PlanRequest, trust_remote_code: bool):
    """The transformers config the model is built from: a local config.json or model directory
    through AutoConfig (remote code only when allowed), else the planner's config dict."""
    from transformers import AutoConfig

    from planner.models import ModelSpec, load_model

    model = req.model
    if isinstance(model, str) and (Path(model).expanduser().is_dir() or model.endswith(".json")):
        path = Path(model).expanduser()
        raw = json.loads((path / "config.json" if path.is_dir() else path).read_text())
        if raw.get("auto_map") and not trust_remote_code:
            raise PlannerError("model", f"{model}: its config needs the model's own code (auto_map); "
                                        "allow it with --trust-remote-code")
        try:
            if path.is_file() and not raw.get("auto_map"):
                kw = {k: v for k, v in raw.items() if k not in ("model_type", "architectures", "torch_dtype", "dtype")}
                return AutoConfig.for_model(raw.get("model_type"), **kw)
            # remote code sits beside its config.json
            return AutoConfig.from_pretrained(str(path.parent if path.is_file() else path),
                                              trust_remote_code=trust_remote_code)
        except (ValueError, KeyError, OSError) as e:
            raise PlannerError("model", f"{model}: transformers cannot read this config: {_first_line(e)}") from None
    spec = model if isinstance(model, ModelSpec) else load_model(model)
    kw = {k: v for k, v in (spec.config or {}).items() if k not in ("architectures", "torch_dtype", "dtype")}
    if kw.get("auto_map") and not trust_remote_code:
        raise PlannerError("model", f"{spec.id}: its config needs the model's own code (auto_map); "
                                    "allow it with --trust-remote-code")
    model_type = kw.pop("model_type", spec.model_type)
    try:
        return AutoConfig.for_model(model_type, **kw)
    except (ValueError, KeyError) as e:
        raise PlannerError("model", f"{spec.id}: transformers cannot build model_type {model_type!r}: "
                                    f"{_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


# --- the tracker ----------------------------------------------------------------------------------


class _NoHandle:
    @staticmethod
    def remove() -> None:
        pass


def _make_tracker(vocab_sizes: set[int]):
    """A MemTracker that keeps, per phase, the largest live total and its breakdown in our
    components. Per-module statistics are switched off: they refuse a module called twice in one
    region (checkpointing recomputes layers, generation calls the model per token) and are not needed."""
    import torch
    from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker, _MemRefType

    class PhaseTracker(MemTracker):
        def __init__(self) -> None:
            super().__init__()
            self.phase: str | None = None
            self.peaks: dict[str, dict[str, int]] = {}
            # "logits" or "kv_cache": new storages count there; "registers": they are not counted
            self.region: str | None = None
            # id(_WeakRefInfo) -> (component, its info): storages made in a region or over the
            # vocabulary; one that becomes a gradient (the LM head's) counts as a gradient from then on
            self._tagged: dict[int, tuple[str, Any]] = {}

        @contextlib.contextmanager
        def counting_as(self, component: str):
            before, self.region = self.region, component
            try:
                yield
            finally:
                self.region = before

        def set_phase(self, phase: str | None) -> None:
            self.phase = phase
            self.record()

        def breakdown(self) -> dict[str, int]:
            snap = self._curr_mem_snap.get(torch.device("cpu"), {})
            total = int(snap.get(_TOTAL_KEY, 0))
            comps = {
                "weights": int(snap.get(_MemRefType.PARAM, 0) + snap.get(_MemRefType.BUFFER, 0)),
                "gradients": int(snap.get(_MemRefType.GRAD, 0)),
                "optimizer_states": int(snap.get(_MemRefType.OPT, 0)),
                "logits": 0,
                "kv_cache": 0,
            }
            for component, winfo in self._tagged.values():
                if winfo.reftype not in (_MemRefType.PARAM, _MemRefType.BUFFER, _MemRefType.GRAD, _MemRefType.OPT):
                    comps[component] += winfo.mem_consumed
            comps["activations"] = total - sum(comps.values())
            comps["overhead"] = 0
            return {c: comps[c] for c in COMPONENTS}

        def record(self) -> None:
            if self.phase is None:
                return
            snap = self._curr_mem_snap.get(torch.device("cpu"))
            if not snap:
                return
            best = self.peaks.get(self.phase)
            if best is None or snap[_TOTAL_KEY] > sum(best.values()):
                self.peaks[self.phase] = self.breakdown()

        def _track(self, reftype, t) -> None:
            component = self.region
            if component == "registers":  # what a GPU kernel keeps in registers takes no memory
                return
            if component is None and t.is_floating_point() and t.dim() and t.shape[-1] in vocab_sizes \
                    and reftype != _MemRefType.OPT:
                component = "logits"
            if component is None:
                return super()._track(reftype, t)
            before = {id(w) for w, _ in (self._WINFO.get(st, (None, None)) for st in _storages(t)) if w is not None}
            super()._track(reftype, t)
            for st in _storages(t):
                winfo, _ = self._WINFO.get(st, (None, None))
                if winfo is not None and id(winfo) not in before:
                    self._tagged[id(winfo)] = (component, winfo)

        def _delete_callback(self, winfo, w_st) -> None:
            self._tagged.pop(id(winfo), None)
            super()._delete_callback(winfo, w_st)

        def watch(self, models, optimizers) -> None:
            """Weights and buffers as PARAM/BUFFER, the trainable weights' gradients as GRAD (a
            gradient hook on each), the optimizers' states as OPT."""
            for model in models:
                self._track_module_params_and_buffers(model, install_grad_hooks=True)
            self.track_external(*optimizers)

        def _track_module_params_and_buffers(self, module, install_grad_hooks: bool = True):
            # frozen parameters (a reference, LoRA's base) take no gradient hook
            for param in module.parameters():
                if not param.requires_grad:
                    self._param_to_grad_hook_handles.setdefault(param, (_NoHandle, _NoHandle))
            return super()._track_module_params_and_buffers(module, install_grad_hooks)

        def _pre_fw_hook(self, module, inputs) -> None:
            pass

        def _post_fw_hook(self, module, inputs, outputs) -> None:
            pass

        def _pre_bw_hook(self, module, args) -> None:
            pass

        def _post_bw_hook(self, module, args) -> None:
            pass

        def _update_peak_stats(self, peak_state) -> None:
            self.record()

    return PhaseTracker()


def _storages(t):
    from torch.distributed._tools.common_utils import get_untyped_storages

    return get_untyped_storages(t)


# --- the loss head --------------------------------------------------------------------------------


def _chunked_logprob_function():
    """Per-token log-probs of the targets from hidden states and the LM head's weight, without the
    T x V logits, laid out as TRL 1.16's fused LM head lays out its memory on a GPU
    (trl/kernels/chunked_logprob.py): one projection buffer of LOSS_TOKEN_TILE x LOSS_VOCAB_TILE in
    the compute dtype, refilled tile by tile; per-token fp32 statistics of an online log-sum-exp;
    only the hidden states and the log-normaliser saved for backward; a backward that recomputes
    each tile, turns it into the logits' gradient in place and accumulates the hidden states' and
    the head's gradients in fp32. The per-tile folds that its Triton kernel does in registers are
    torch ops here, on LOSS_FOLD_COLUMNS columns at a time, so their fp32 temporaries stay small."""
    import torch

    def tiles(n_rows, n_cols):
        for r in range(0, n_rows, LOSS_TOKEN_TILE):
            for c in range(0, n_cols, LOSS_VOCAB_TILE):
                yield r, min(r + LOSS_TOKEN_TILE, n_rows), c, min(c + LOSS_VOCAB_TILE, n_cols)

    def folds(c0, c1):
        for f in range(c0, c1, LOSS_FOLD_COLUMNS):
            yield f, min(f + LOSS_FOLD_COLUMNS, c1)

    class ChunkedLogProb(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, targets, tracker):
            n, vocab = hidden.shape[0], weight.shape[0]
            with tracker.counting_as("logits"):
                running_max = torch.full((n,), float("-inf"), dtype=torch.float32)
                sum_exp = torch.zeros(n, dtype=torch.float32)
                target_logit = torch.zeros(n, dtype=torch.float32)
                buf = hidden.new_empty(min(n, LOSS_TOKEN_TILE), min(vocab, LOSS_VOCAB_TILE))
                for r0, r1, c0, c1 in tiles(n, vocab):
                    tile = buf[:r1 - r0, :c1 - c0]
                    torch.mm(hidden[r0:r1], weight[c0:c1].t(), out=tile)
                    with tracker.counting_as("registers"):  # the Triton fold's work
                        for f0, f1 in folds(c0, c1):
                            z = tile[:, f0 - c0:f1 - c0].float()
                            new_max = torch.maximum(running_max[r0:r1], z.amax(-1))
                            sum_exp[r0:r1] = sum_exp[r0:r1] * (running_max[r0:r1] - new_max).exp() \
                                + (z - new_max[:, None]).exp().sum(-1)
                            running_max[r0:r1] = new_max
                            t = targets[r0:r1]
                            inside = (t >= f0) & (t < f1)
                            picked = z.gather(-1, (t - f0).clamp(0, f1 - f0 - 1)[:, None]).squeeze(-1)
                            target_logit[r0:r1] = torch.where(inside, picked, target_logit[r0:r1])
                            del z, picked, new_max
                del buf, tile
                log_z = running_max + sum_exp.log()
                out = target_logit - log_z
            ctx.save_for_backward(hidden, weight, targets, log_z)
            ctx.tracker = tracker
            return out

        @staticmethod
        def backward(ctx, grad_out):
            hidden, weight, targets, log_z = ctx.saved_tensors
            n, vocab = hidden.shape[0], weight.shape[0]
            with ctx.tracker.counting_as("logits"):
                grad_hidden = torch.zeros(hidden.shape, dtype=torch.float32)
                grad_weight = torch.zeros(weight.shape, dtype=torch.float32) if ctx.needs_input_grad[1] else None
                buf = hidden.new_empty(min(n, LOSS_TOKEN_TILE), min(vocab, LOSS_VOCAB_TILE))
                g = grad_out.float()
                for r0, r1, c0, c1 in tiles(n, vocab):
                    tile = buf[:r1 - r0, :c1 - c0]
                    torch.mm(hidden[r0:r1], weight[c0:c1].t(), out=tile)
                    # the gradient tile in place and the fp32-output GEMMs (addmm with out_dtype on
                    # CUDA): no copies in GPU memory, so the fp32 casts here are not counted
                    with ctx.tracker.counting_as("registers"):
                        h = hidden[r0:r1].float()
                        for f0, f1 in folds(c0, c1):
                            # d log p_target / d z = onehot(target) - softmax(z), times the incoming gradient
                            z = (tile[:, f0 - c0:f1 - c0].float() - log_z[r0:r1, None]).exp_().neg_()
                            t = targets[r0:r1]
                            inside = (t >= f0) & (t < f1)
                            z.scatter_add_(-1, (t - f0).clamp(0, f1 - f0 - 1)[:, None], inside[:, None].to(z.dtype))
                            z.mul_(g[r0:r1, None])
                            grad_hidden[r0:r1].addmm_(z, weight[f0:f1].float())
                            if grad_weight is not None:
                                grad_weight[f0:f1].addmm_(z.t(), h)
                            del z
                        del h
                del buf, tile
                gh = grad_hidden.to(hidden.dtype)
                del grad_hidden
                gw = None if grad_weight is None else grad_weight.to(weight.dtype)
            return gh, gw, None, None

    return ChunkedLogProb


@dataclass
class _Runtime:
    """What a step reads: the request, profile, tracker, dtypes, and the loss implementation."""

    req: PlanRequest
    profile: MethodProfile
    tracker: Any
    loss: str
    dtype: Any
    autocast: Callable[[], Any]
    chunked: Any
    notes: list[str]


def _unwrap(model):
    """The CausalLM or sequence classifier under a peft wrapper."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _backbone_and_head(model):
    lm = _unwrap(model)
    backbone = getattr(lm, lm.base_model_prefix)
    head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") and lm.get_output_embeddings() \
        is not None else lm.score
    return backbone, head


def _token_logprobs(rt: _Runtime, model, ids, positions: slice | None = None, entropy: bool = False):
    """Per-token log-probs of the next tokens in ids ([B, S-1], or the positions given), as the
    trainer's loss reads them: the chunked function (fused/chunked) or an fp32 log-softmax over
    materialised logits. Materialised with positions (profile.completion_logprobs, our PPO:
    runners/rl/rollout.py response_logprobs): the model's logits over the whole sequence, the
    completion's sliced out, upcast, divided by the sampling temperature; entropy: also the
    entropy of each position (PPO's scoring of the policy, runners/rl/losses.py)."""
    import torch

    backbone, head = _backbone_and_head(model)
    with rt.autocast():
        hidden = backbone(input_ids=ids, use_cache=False).last_hidden_state
    targets = ids[:, 1:]
    hidden = hidden[:, :-1]
    if rt.loss == "materialised":
        with rt.tracker.counting_as("logits"), rt.autocast():
            logits = head(hidden)
        if positions is not None:
            logits, targets = logits[:, positions], targets[:, positions]
        z = logits.float()
        if positions is not None:
            z = z / SAMPLING_TEMPERATURE
        del logits
        logp = torch.log_softmax(z, dim=-1)
        if entropy:
            with torch.no_grad():
                probs = torch.softmax(z, dim=-1)
                _ = torch.logsumexp(z, dim=-1) - (probs * z).sum(dim=-1)
                del probs
        del z
        return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if positions is not None:
        hidden, targets = hidden[:, positions], targets[:, positions]
    b, s = targets.shape
    weight = head.weight
    if weight.dtype != hidden.dtype:  # autocast: the head's tiles are computed in bf16
        weight = weight.to(hidden.dtype)
    flat = rt.chunked.apply(hidden.reshape(b * s, -1), weight, targets.reshape(-1), rt.tracker)
    return flat.view(b, s)


def _scores(rt: _Runtime, model, ids, per_token: bool):
    """A scalar-head model's output: a score per token (a value model) or for the last token (a reward)."""
    backbone, head = _backbone_and_head(model)
    with rt.autocast():
        hidden = backbone(input_ids=ids, use_cache=False).last_hidden_state
        if not per_token:
            hidden = hidden[:, -1]
        return head(hidden).float().squeeze(-1)


# Each family's scalar loss from what the forward returned ([B, S] log-probs or scores); the
# memory of a step is in the forwards and the backward, not in these few scalars.
def _sft_loss(out, extra):
    return -out["policy"].mean()


def _pair_loss(out, extra):
    seq = out["policy"].sum(-1)
    chosen, rejected = seq.chunk(2)
    ref = extra.get("reference")
    if ref is not None:
        rc, rr = ref.sum(-1).chunk(2)
        chosen, rejected = chosen - rc, rejected - rr
    import torch.nn.functional as F

    return -F.logsigmoid(0.1 * (chosen - rejected)).mean() - out["policy"].chunk(2)[0].mean()


def _kto_loss(out, extra):
    import torch

    ratio = out["policy"].sum(-1) - extra.get("reference", out["policy"].detach()).sum(-1)
    return (1 - torch.sigmoid(0.1 * ratio)).mean()


def _rl_loss(out, extra):
    old = extra.get("policy", out["policy"].detach())
    ratio = (out["policy"] - old).exp()
    loss = -(ratio * extra["advantages"][:, None]).mean()
    if "reference" in extra:
        loss = loss + 0.05 * (out["policy"] - extra["reference"]).mean()
    if "value" in out:  # PPO: the value model's regression on the returns
        loss = loss + ((out["value"] - extra["advantages"][:, None]) ** 2).mean()
    return loss


def _rm_loss(out, extra):
    import torch.nn.functional as F

    chosen, rejected = out["reward"].chunk(2)
    return -F.logsigmoid(chosen - rejected).mean()


_LOSSES: dict[str, Callable] = {
    "sft": _sft_loss, "dpo": _pair_loss, "ipo": _pair_loss, "orpo": _pair_loss, "simpo": _pair_loss,
    "online-dpo": _pair_loss, "kto": _kto_loss, "grpo": _rl_loss, "rloo": _rl_loss, "ppo": _rl_loss,
    "rm": _rm_loss,
}


# --- models ---------------------------------------------------------------------------------------


@dataclass
class _Held:
    """One model the step holds: the profile's copy, or the policy with its adapter off."""

    role: str
    model: Any
    trainable: bool
    scalar_head: bool
    adapter_off: bool = False  # the reference is the LoRA policy with its adapter switched off


def _build_copies(rt: _Runtime, cfg, trust_remote_code: bool, progress) -> list[_Held]:
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    req, profile = rt.req, rt.profile
    opts = _active_options(req, profile)
    held: list[_Held] = []
    policy = None
    for c in profile.copies:
        hit = [o for o in c.dropped_by if o in opts]
        if hit:
            if hit[0] == "lora":
                held.append(_Held(c.role, None, False, c.scalar_head, adapter_off=True))
            continue
        other = {"reward": req.reward_model, "value": req.value_model, "judge": req.judge_model}.get(c.role)
        ccfg = cfg
        if other and other not in ("rule", "shared", "api"):
            ccfg = _hf_config(req.replace(model=other), trust_remote_code)
        progress(f"building the {c.role} model…")
        try:
            if c.scalar_head:
                import copy as _copy

                ccfg = _copy.deepcopy(ccfg)
                ccfg.num_labels = 1
                if getattr(ccfg, "pad_token_id", None) is None:
                    ccfg.pad_token_id = 0
                model = AutoModelForSequenceClassification.from_config(ccfg, dtype=rt.dtype,
                                                                       trust_remote_code=trust_remote_code)
            else:
                model = AutoModelForCausalLM.from_config(ccfg, dtype=rt.dtype, trust_remote_code=trust_remote_code)
        except PlannerError:
            raise
        except Exception as e:  # transformers' refusals come in many types
            raise PlannerError("model", f"transformers cannot build {ccfg.model_type!r} "
                                        f"({'sequence classifier' if c.scalar_head else 'causal LM'}): "
                                        f"{_first_line(e)}") from None
        _set_attention(model)
        if c.trainable and req.grad_ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if c.trainable and req.lora_rank and c.peft:
            model = _add_lora(model, req, c.scalar_head)
            if c.scalar_head:
                # the score head trains in full beside the adapters (peft's SEQ_CLS would deep-copy
                # it into modules_to_save, which a fake tensor cannot be copied into)
                _unwrap(model).score.requires_grad_(True)
        if not c.trainable:
            model.requires_grad_(False)
            model.eval()
        else:
            model.train()
        held.append(_Held(c.role, model, c.trainable, c.scalar_head))
        if c.role == "policy":
            policy = model
    for h in held:
        if h.adapter_off:
            h.model = policy
    del torch
    return held


def _set_attention(model) -> None:
    """SDPA, as the runners load models, where the architecture has it."""
    try:
        model.set_attn_implementation("sdpa")
    except Exception:  # an architecture without SDPA keeps its own attention
        pass


def _add_lora(model, req: PlanRequest, scalar_head: bool = False):
    from peft import LoraConfig, get_peft_model

    from planner.terms import LORA_TARGETS

    # the planner's own list of module names (peft matches them as name suffixes; absent ones are skipped)
    targets = "all-linear" if LORA_TARGETS[req.lora_targets] is None else list(LORA_TARGETS[req.lora_targets])
    try:
        with _fake_safe_module_apply():
            return get_peft_model(model, LoraConfig(r=req.lora_rank, lora_alpha=2 * req.lora_rank,
                                                    target_modules=targets, lora_dropout=req.lora_dropout,
                                                    task_type=None if scalar_head else "CAUSAL_LM"))
    except Exception as e:
        raise PlannerError("lora_rank", f"peft cannot add LoRA adapters under fake tensors: {_first_line(e)}") from None


@contextlib.contextmanager
def _eager_transformers():
    """transformers takes a fake tensor for a sign of graph capture (utils.import_utils.is_tracing)
    and then builds the causal mask as a [B, 1, S, S] tensor instead of leaving SDPA its is_causal
    path, which also changes SDPA's kernel. The runner runs eagerly on real tensors, so the trace
    must see what eager code does: fake tensors are not taken for tracing while it runs. The one
    check that then reads values, whether position ids restart (packed sequences), answers no: the
    traced batches are not packed."""
    from transformers import masking_utils
    from transformers.utils import import_utils

    real_fake, real_packed = import_utils.is_fake_tensor, masking_utils.find_packed_sequence_indices
    import_utils.is_fake_tensor = lambda tensor: False
    masking_utils.find_packed_sequence_indices = lambda position_ids: None
    try:
        with _dropout_as_on_a_gpu():
            yield
    finally:
        import_utils.is_fake_tensor = real_fake
        masking_utils.find_packed_sequence_indices = real_packed


@contextlib.contextmanager
def _dropout_as_on_a_gpu():
    """Training dropout as CUDA runs it: torch's native_dropout, which saves a 1-byte bool mask for
    backward. The trace's tensors are CPU tensors, and CPU dropout saves a noise tensor in the
    input's dtype instead (4 bytes for LoRA's fp32 dropout: +15.6 MiB on the small test model's
    SFT step without checkpointing)."""
    import torch
    import torch.nn.functional as F

    real = F.dropout

    def dropout(input, p=0.5, training=True, inplace=False):
        if not training or p == 0 or inplace:
            return real(input, p, training, inplace)
        return torch.native_dropout(input, p, True)[0]

    F.dropout = dropout
    try:
        yield
    finally:
        F.dropout = real


@contextlib.contextmanager
def _fake_safe_module_apply():
    """Module.to() on fake parameters, for peft's placement of its adapters.

    torch swaps a fake parameter with its converted copy (torch.utils.swap_tensors), which the fake
    mode refuses ("has weakref associated with it"), so peft's .to(device, dtype) of every new adapter
    fails. Here a module with fake parameters gets new Parameter objects instead, as torch's set-data
    path would give it; nothing else changes. Only while peft builds the adapters."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensor

    real_apply = torch.nn.Module._apply

    def apply(self, fn, recurse=True):
        if not any(isinstance(p, FakeTensor) for p in self.parameters()):
            return real_apply(self, fn, recurse)
        for m in self.modules() if recurse else (self,):
            for name, p in list(m._parameters.items()):
                if p is not None:
                    with torch.no_grad():
                        new = fn(p)
                    if new is not p:
                        m._parameters[name] = torch.nn.Parameter(new, requires_grad=p.requires_grad)
            for name, b in list(m._buffers.items()):
                if b is not None:
                    m._buffers[name] = fn(b)
        return self

    torch.nn.Module._apply = apply
    try:
        yield
    finally:
        torch.nn.Module._apply = real_apply


def _optimizer(rt: _Runtime, params):
    """The runner's optimizer as it runs on a GPU: under bf16-kahan torch-optimi's AdamW with Kahan
    compensation (runners/recipes/common.py), which takes its foreach path on CUDA; otherwise the
    trainers' default optim, adamw_torch_fused. Both update in place, so the step holds no
    per-parameter temporaries; torch's unfused single-tensor AdamW would hold two copies of the
    largest parameter (measured here: +16 MiB on the small test model in fp32)."""
    import torch

    if rt.req.optimizer == "sgd":
        return torch.optim.SGD(params, lr=1e-5)
    if rt.req.precision == "bf16-kahan":
        from optimi import AdamW

        return AdamW(params, lr=1e-5, kahan_sum=None, foreach=True)
    return torch.optim.AdamW(params, lr=1e-5, fused=True)


# --- the step -------------------------------------------------------------------------------------


def _generate(rt: _Runtime, model, seqs: int, context: int, completion: int):
    """A fixed-length decode with a KV cache: the prefill over the prompts (the last token's logits
    in fp32, as generate keeps them), then the cache grown to its full length and the last decode
    steps traced. The cache's tensors count as kv_cache while the decode runs."""
    import torch
    from transformers import DynamicCache

    vocab = _unwrap(model).config.get_text_config().vocab_size
    prompt = max(context - completion, 1)
    ids = torch.randint(0, vocab, (seqs, prompt))
    cache = DynamicCache(config=_unwrap(model).config)
    with torch.no_grad(), rt.autocast(), _cache_updates_count_as_kv(cache, rt.tracker):
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        nxt = out.logits[:, -1].float().argmax(-1, keepdim=True)
        del out
        steps = min(DECODE_STEPS_TRACED, max(completion - 1, 0))
        grow = context - prompt - 1 - steps  # decode steps not traced, filled in at once
        if grow > 0:
            with rt.tracker.counting_as("kv_cache"):
                for layer in cache.layers:
                    if getattr(layer, "keys", None) is None or layer.keys.dim() != 4:
                        continue
                    k = layer.keys
                    pad = k.new_zeros(k.shape[0], k.shape[1], grow, k.shape[3])
                    layer.keys = torch.cat([k, pad], dim=-2)
                    v = layer.values
                    layer.values = torch.cat([v, v.new_zeros(v.shape[0], v.shape[1], grow, v.shape[3])], dim=-2)
                    del k, v, pad
        for _ in range(steps):
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True, logits_to_keep=1)
            nxt = out.logits[:, -1].float().argmax(-1, keepdim=True)
            del out
    del cache
    return torch.randint(0, vocab, (seqs, context))


@contextlib.contextmanager
def _cache_updates_count_as_kv(cache, tracker):
    """What the cache layers' update() makes (the concatenated keys and values) counts as kv_cache.
    Patched on the layer classes for the decode's duration (a per-instance wrapper would make a
    reference cycle that keeps the cache alive after the decode)."""
    classes = {type(layer) for layer in cache.layers}
    real = {cls: cls.update for cls in classes}

    def counted(update):
        def update_counted(self, *args, **kwargs):
            with tracker.counting_as("kv_cache"):
                return update(self, *args, **kwargs)
        return update_counted

    for cls in classes:
        cls.update = counted(real[cls])
    try:
        yield
    finally:
        for cls in classes:
            cls.update = real[cls]


def _step(rt: _Runtime, held: list[_Held], optimizers: list, tokens: dict[str, int], record: bool) -> None:
    """One training step of the method, phase by phase, from the profile's facts."""
    import torch

    req, profile, tr = rt.req, rt.profile, rt.tracker
    context = _context_len(req, profile)
    completion = req.completion_len or req.seq_len // 2
    seqs = req.batch_size * profile.sequences_per_example
    policy = next(h for h in held if not h.adapter_off)
    lm_held = [h for h in held if not h.scalar_head]
    vocab = _unwrap(lm_held[0].model if lm_held else policy.model).config.get_text_config().vocab_size
    positions = slice(context - 1 - completion, None) if profile.completion_logprobs else None

    def phase(name):
        tr.set_phase(name if record else None)

    extra: dict[str, Any] = {}
    if "generation" in profile.phases:
        phase("generation")
        per_example = (req.num_generations or profile.default_generations) \
            if profile.kv_cache_holds_all_generations else 1
        gen_seqs = (req.rollout_batch_size or req.batch_size) * per_example
        _generate(rt, policy.model, gen_seqs, context, completion)
        tokens["generated_sequences"] = gen_seqs
    ids = torch.randint(0, vocab, (seqs, context))
    tokens["sequences"], tokens["tokens"] = seqs, seqs * context
    if "scoring" in profile.phases:
        scorers = [h for h in held if not h.trainable] + \
            ([h for h in held if h.trainable and not h.adapter_off] if profile.scores_trainable_copies else [])
        if scorers:
            phase("scoring")
        with torch.no_grad():
            for h in scorers:
                off = h.model.disable_adapter() if h.adapter_off else contextlib.nullcontext()
                with off:
                    if h.scalar_head:
                        extra[h.role] = _scores(rt, h.model, ids, per_token=h.role == "value")
                    else:  # our PPO's scoring forward of the trainable policy also takes its entropy
                        extra[h.role] = _token_logprobs(rt, h.model, ids, positions,
                                                        entropy=h.trainable and profile.completion_logprobs)
    extra["advantages"] = torch.zeros(seqs)
    phase("forward_backward")
    out = {}
    for h in held:
        if h.trainable:
            if h.scalar_head:
                out[h.role] = _scores(rt, h.model, ids, per_token=h.role == "value")
            else:
                out[h.role] = _token_logprobs(rt, h.model, ids, positions)
    loss = _LOSSES[req.method](out, extra)
    del out
    loss.backward()
    del loss
    phase("optimizer_step")
    for opt in optimizers:  # every trainable copy steps before any gradient is freed (PPO: policy and value)
        opt.step()
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    phase(None)


def trace_plan(req: PlanRequest, progress: Callable[[str], None] | None = None, *,
               trust_remote_code: bool = False, fake: bool = True) -> TracedPlan:
    """Trace the method's step for the request (see the module docstring).

    progress: called with one line per stage of the work ("building …", "tracing step 1/2 …").
    trust_remote_code: let transformers run the model's own code (a config with auto_map).
    fake: False runs the same step on real tensors (tests compare the two)."""
    progress = progress or (lambda line: None)
    profile = get_profile(req.method)
    check_traceable(req, profile)
    if req.method not in _LOSSES:
        raise PlannerError("method", f"{req.method} is not traced yet; traced: {', '.join(_LOSSES)}")
    try:
        validate(req)
    except PlannerError as e:
        if e.field != "model":  # a model the analytic planner cannot read may still be built by transformers
            raise
    loss = loss_implementation(req, profile)
    started = time.time()
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    cfg = _hf_config(req, trust_remote_code)
    if hasattr(cfg, "use_cache"):
        cfg.use_cache = False
    dtype = torch.bfloat16 if req.precision in ("bf16", "bf16-kahan") else torch.float32
    if req.precision == "amp-bf16":
        def autocast():
            return torch.autocast("cpu", dtype=torch.bfloat16)
    else:
        autocast = contextlib.nullcontext
    notes = ["a trace holds no CUDA context or allocator reserve: overhead is 0 here (the analytic plan adds it)"]
    mode = FakeTensorMode(allow_non_fake_inputs=False) if fake else contextlib.nullcontext()
    vocab_sizes = {getattr(cfg.get_text_config(), "vocab_size", 0)}
    tokens: dict[str, int] = {}
    with mode, _eager_transformers():
        # parameters and buffers must be made inside the mode to be fake
        torch.manual_seed(0)
        tracker = _make_tracker(vocab_sizes)
        rt = _Runtime(req, profile, tracker, loss, dtype, autocast, _chunked_logprob_function(), notes)
        progress("building model under fake tensors…" if fake else "building model on real tensors…")
        try:
            held = _build_copies(rt, cfg, trust_remote_code, progress)
            trainable = [h for h in held if h.trainable and not h.adapter_off]
            optimizers = [_optimizer(rt, [p for p in h.model.parameters() if p.requires_grad]) for h in trainable]
            tracker.watch({id(h.model): h.model for h in held}.values(), optimizers)
            with tracker:
                for step in range(TRACED_STEPS):
                    progress(f"tracing step {step + 1}/{TRACED_STEPS} ({', '.join(profile.phases)})…")
                    _step(rt, held, optimizers, tokens, record=step == TRACED_STEPS - 1)
        except PlannerError:
            raise
        except Exception as e:  # an architecture's own code can fail under fake tensors in many ways
            raise PlannerError("model", f"tracing {req.method} on model_type {cfg.model_type!r} failed"
                                        f"{' under fake tensors' if fake else ''}: {type(e).__name__}: "
                                        f"{_first_line(e)}") from None
        peaks = dict(tracker.peaks)
    phases = []
    for name in profile.phases:
        if name in peaks:
            comps = peaks[name]
            phases.append({"name": name, "stage": req.method, "components": comps,
                           "total_bytes": sum(comps.values()), "is_peak": False})
    peak = max(phases, key=lambda p: p["total_bytes"])
    peak["is_peak"] = True
    model_id = req.model if isinstance(req.model, str) else getattr(req.model, "id", "custom")
    return TracedPlan(method=req.method, model=str(model_id), loss=loss, fake=fake, phases=phases,
                      peak_phase=peak["name"], peak_bytes_per_gpu=peak["total_bytes"],
                      components=dict(peak["components"]), seconds=round(time.time() - started, 2),
                      tokens=tokens, notes=notes)



# --- side by side with the analytic plan ----------------------------------------------------------


def side_by_side(plan, traced: TracedPlan) -> dict[str, Any]:
    """The traced plan's dict with, per phase and at the peak, analytic / traced: the analytic
    figure without its overhead term (which a trace has no counterpart for). plan may be None (a
    model the analytic planner cannot read)."""
    d = traced.to_dict()
    analytic = {p["name"]: p for p in plan.phases} if plan is not None else {}
    for ph in d["phases"]:
        a = analytic.get(ph["name"])
        ph["analytic_bytes"] = None if a is None else a["total_bytes"] - a["components"]["overhead"]
        ph["ratio"] = None if a is None or not ph["total_bytes"] else round(ph["analytic_bytes"] / ph["total_bytes"], 4)
    if plan is not None:
        peak = next(p for p in plan.phases if p.get("is_peak"))
        d["analytic_peak_bytes"] = peak["total_bytes"] - peak["components"]["overhead"]
        d["peak_ratio"] = round(d["analytic_peak_bytes"] / traced.peak_bytes_per_gpu, 4)
    return d


def format_side_by_side(plan, traced: TracedPlan) -> str:
    """Text table: per phase and component, analytic and traced GiB (MiB below 1 GiB) and their ratio."""
    gib, unit = (2**30, "GiB") if traced.peak_bytes_per_gpu >= 2**30 else (2**20, "MiB")
    d = side_by_side(plan, traced)
    analytic = {p["name"]: p for p in plan.phases} if plan is not None else {}
    lines = [f"  traced ({'fake' if traced.fake else 'real'} tensors, torch MemTracker, step 2 of 2, loss "
             f"{traced.loss}): {traced.seconds:.1f} s; analytic without its overhead term",
             f"  {'phase':<18} {'component':<17} {'analytic':>9} {'traced':>9} {'ratio':>7}  ({unit})"]

    def ratio(a, t):
        return "-" if a is None or not t else f"{a / t:.2f}"

    for ph in d["phases"]:
        a = analytic.get(ph["name"])
        for comp in COMPONENTS:
            t = ph["components"][comp]
            av = None if a is None else (0 if comp == "overhead" else a["components"][comp])
            if not t and not av:
                continue
            lines.append(f"  {ph['name']:<18} {comp:<17} {'-' if av is None else f'{av / gib:,.2f}':>9} "
                         f"{t / gib:>9,.2f} {ratio(av, t):>7}")
        av = ph["analytic_bytes"]
        lines.append(f"  {ph['name']:<18} {'total':<17} {'-' if av is None else f'{av / gib:,.2f}':>9} "
                     f"{ph['total_bytes'] / gib:>9,.2f} {ratio(av, ph['total_bytes']):>7}")
    if plan is not None:
        lines.append(f"  peak: analytic {d['analytic_peak_bytes'] / gib:,.2f} {unit} ({plan.peak_phase}, "
                     f"{plan.peak_bytes_per_gpu / gib:,.2f} with overhead), traced {traced.peak_bytes_per_gpu / gib:,.2f} "
                     f"{unit} ({traced.peak_phase}): ratio {d['peak_ratio']:.2f}")
    else:
        lines.append(f"  peak: traced {traced.peak_bytes_per_gpu / gib:,.2f} {unit} ({traced.peak_phase}); "
                     "no analytic plan for this model")
    return "\n".join(lines)


__all__ = ["TracedPlan", "trace_plan", "side_by_side", "format_side_by_side", "loss_implementation", "check_traceable",
           "LOSS_IMPLEMENTATIONS"]
