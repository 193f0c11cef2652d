"""PPO is never sharded: the launch decision keeps a full replica per GPU and refuses a forced stage."""

from __future__ import annotations

import pytest

from runners.rundir.decide import decide
from runners.rundir.spec import SpecError
from tests.runners.launch_helpers import fake_gpus, spec


def ppo_spec(**over):
    return spec(method="ppo", reward={"model": "some/reward-model"}, **over)


@pytest.mark.parametrize("stage", [2, 3])
def test_a_forced_sharding_stage_is_refused_for_ppo_with_the_reason(stage):
    with pytest.raises(SpecError) as err:
        decide(ppo_spec(zero_stage=stage), fake_gpus(4, 80))
    assert str(err.value).startswith(f"zero_stage: {stage} is refused for ppo: our PPO trainer updates two models")


def test_ppo_that_does_not_fit_a_replica_stays_ddp_flagged_where_dpo_would_shard():
    # Llama-3.1-8B full fine-tune on 4 x 40 GB: DPO finds a ZeRO stage, PPO keeps DDP and says why
    dpo, _ = decide(spec(), fake_gpus(4, 40, name="NVIDIA A100-SXM4-40GB"))
    assert dpo.zero in (2, 3)
    ppo, planned = decide(ppo_spec(), fake_gpus(4, 40, name="NVIDIA A100-SXM4-40GB"))
    assert (ppo.kind, ppo.zero, ppo.fits) == ("ddp", 0, False)
    assert [t["zero"] for t in ppo.tried] == [0]
    assert any(n.startswith("ppo is not sharded: our PPO trainer") for n in ppo.notes)
    assert planned["plan"]["method"] == "ppo"
