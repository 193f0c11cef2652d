"""bf16-kahan, the default on a bf16 GPU: bf16 weights trained by AdamW with Kahan summation keep the
small updates that pure bf16 rounds away (bench/results/precision.md)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from runners.recipes import common  # noqa: E402


def _kept_share(make_optimizer, steps: int = 20, lr: float = 1e-6) -> float:
    """Share of fp32's update that a bf16 weight (+ its Kahan compensation, if any) holds after `steps`."""
    torch.manual_seed(0)
    start = torch.randn(256, 64) * 0.02
    grads = [torch.randn(256, 64) for _ in range(steps)]

    def train(weight: torch.nn.Parameter, optimizer) -> torch.Tensor:
        for g in grads:
            weight.grad = g.to(weight.dtype)
            optimizer.step()
        held = weight.detach().float()
        comp = optimizer.state[weight].get("kahan_comp")
        return held + comp.float() if torch.is_tensor(comp) and comp.shape == weight.shape else held

    ref = torch.nn.Parameter(start.clone())
    ref_end = train(ref, torch.optim.AdamW([ref], lr=lr, weight_decay=0.0))
    weight = torch.nn.Parameter(start.to(torch.bfloat16))
    end = train(weight, make_optimizer([weight], lr))
    d = ref_end - start
    return float(((end - start.to(torch.bfloat16).float()) * d).sum() / (d * d).sum())


def test_kahan_adamw_keeps_updates_pure_bf16_loses() -> None:
    assert _kept_share(lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.0)) < 0.2
    assert _kept_share(lambda params, lr: common.kahan_adamw(params, lr=lr)) > 0.95


def _trainer(optim: str = "adamw_torch_fused"):
    args = SimpleNamespace(optim=optim, learning_rate=1e-6, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8)
    return SimpleNamespace(args=args, optimizer=None, optimizer_cls_and_kwargs=None)


def _run(precision: str):
    return SimpleNamespace(precision=precision, notes=[], log=lambda message: None)


def test_bf16_kahan_runs_give_the_trainer_kahan_adamw(monkeypatch: pytest.MonkeyPatch) -> None:
    from optimi import AdamW

    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    trainer = _trainer()
    assert common.use_kahan_optimizer(_run("bf16-kahan"), trainer)
    cls, kwargs = trainer.optimizer_cls_and_kwargs
    assert cls is AdamW and kwargs["betas"] == (0.9, 0.999) and kwargs["eps"] == 1e-8 and kwargs["lr"] == 1e-6
    for precision in ("bf16", "amp-bf16", "fp32"):  # torch's AdamW, as asked
        trainer = _trainer()
        assert not common.use_kahan_optimizer(_run(precision), trainer) and trainer.optimizer_cls_and_kwargs is None
    trainer = _trainer("adamw_8bit")  # another optimizer asked for in hparams: left alone
    assert not common.use_kahan_optimizer(_run("bf16-kahan"), trainer) and trainer.optimizer_cls_and_kwargs is None
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")  # DeepSpeed keeps fp32 master weights itself
    assert not common.use_kahan_optimizer(_run("bf16-kahan"), _trainer())


def test_pure_bf16_below_the_vanishing_rate_is_warned() -> None:
    run = _run("bf16")
    line = common.warn_vanishing_updates(run, 1e-6)
    assert line and "bf16-kahan" in line and run.notes == [line]
    assert common.warn_vanishing_updates(_run("bf16"), 1e-3) is None
    assert common.warn_vanishing_updates(_run("bf16-kahan"), 1e-6) is None


def test_bf16_kahan_loads_bf16_weights() -> None:
    assert common.model_dtype("bf16-kahan") == torch.bfloat16 == common.model_dtype("bf16")


def test_ppo_builds_kahan_adamw_under_bf16_kahan() -> None:
    from optimi import AdamW

    from runners.rl.ppo_trainer import PPOTrainer

    model = torch.nn.Linear(4, 4).to(torch.bfloat16)
    config = SimpleNamespace(adam_epsilon=1e-8, weight_decay=0.0)
    kahan = PPOTrainer._optimizer(SimpleNamespace(optimizer_factory=common.kahan_adamw, config=config), model, 1e-6)
    plain = PPOTrainer._optimizer(SimpleNamespace(optimizer_factory=None, config=config), model, 1e-6)
    assert isinstance(kahan, AdamW) and type(plain) is torch.optim.AdamW
    assert (kahan.defaults["beta1"], kahan.defaults["beta2"]) == plain.defaults["betas"] == (0.9, 0.999)
