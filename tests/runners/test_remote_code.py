"""One switch decides whether code from a model folder runs (issue 11): the spec's trust_remote_code.
A `trust_remote_code` inside hparams (model_init_kwargs and the like, which TRL gives priority when it
loads the reference model) is refused, and every loader reads the spec only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from alignplan.cli import main
from runners.paths import RUNS_DIR_ENV
from runners.recipes import common
from runners.rundir.spec import RunSpec, SpecError

EVIL = '''
import os
from pathlib import Path
Path(os.environ["ALIGNPLAN_TEST_MARKER"]).write_text("remote code ran")
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification
class EvilConfig(LlamaConfig):
    pass
class EvilForCausalLM(LlamaForCausalLM):
    config_class = EvilConfig
class EvilForSequenceClassification(LlamaForSequenceClassification):
    config_class = EvilConfig
'''


@pytest.fixture
def evil_model(tmp_path, tiny_model_dir, monkeypatch) -> tuple[Path, Path]:
    """The tiny model, whose config.json names classes in evil.py: importing evil.py writes a marker."""
    folder = tmp_path / "evil-model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "evil.py").write_text(EVIL)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilForCausalLM",
                          "AutoModelForSequenceClassification": "evil.EvilForSequenceClassification"}
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "marker"
    monkeypatch.setenv("ALIGNPLAN_TEST_MARKER", str(marker))
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    return folder, marker


def _run(model: Path, trust: bool, **hparams):
    spec = RunSpec.parse({"method": "dpo", "model": str(model), "dataset": {"path": "x.jsonl"},
                          "trust_remote_code": trust, "hparams": hparams})
    return SimpleNamespace(spec=spec, precision="fp32", cuda=False, method="dpo", log=lambda *a, **k: None,
                           data_format=None, run_dir=model.parent)


@pytest.mark.parametrize("hparams", [
    {"model_init_kwargs": {"trust_remote_code": True}},
    {"ref_model_init_kwargs": {"dtype": "float32", "trust_remote_code": True}},
    {"model_init_kwargs": '{"trust_remote_code": true}'},  # TRL also reads these as a JSON string
    {"trust_remote_code": True},
])
def test_trust_remote_code_in_hparams_is_refused(hparams):
    with pytest.raises(SpecError, match="trust_remote_code") as err:
        common.refuse_remote_code_switches(hparams)
    assert "\n" not in str(err.value) and str(err.value).startswith("hparams.")


@pytest.mark.timeout(120)
def test_code_in_a_model_folder_never_runs_unless_the_spec_allows_it(evil_model, tmp_path, capsys, monkeypatch):
    folder, marker = evil_model
    from runners.judges.local import LocalLMJudge
    from runners.judges.reward_model import RewardModelJudge
    from runners.recipes.ppo import load_scalar_model

    off = _run(folder, False)
    tokenizer = common.load_tokenizer(off)
    common.load_model(off, tokenizer=tokenizer)  # the policy (and TRL's reference, which is loaded the same way)
    common.load_model(off, head="score", tokenizer=tokenizer)  # a reward model
    load_scalar_model(off, str(folder), tokenizer)  # PPO's reward/value model
    RewardModelJudge.load(str(folder), trust_remote_code=off.spec.trust_remote_code)
    try:
        LocalLMJudge.load(str(folder), "{prompt} {a} {b}", trust_remote_code=off.spec.trust_remote_code)
    except (TypeError, ValueError):
        pass  # a template this judge refuses; what matters is that no code ran while loading
    assert not marker.exists()
    # the old bypass: hparams.model_init_kwargs, through the CLI, is one line and exit 2, nothing created
    monkeypatch.setenv(RUNS_DIR_ENV, str(tmp_path / "runs"))
    data = tmp_path / "prefs.jsonl"
    data.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    capsys.readouterr()
    code = main(["run", "--method", "dpo", "--model", str(folder), "--dataset", str(data), "--dry-run",
                 "--hparam", "model_init_kwargs={trust_remote_code: true}"])
    err = capsys.readouterr().err
    assert code == 2 and "hparams.model_init_kwargs.trust_remote_code" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any(p.is_dir() for p in (tmp_path / "runs").iterdir())
    with pytest.raises(SpecError, match="model_init_kwargs.trust_remote_code"):
        common.check_hparams({"model_init_kwargs": {"trust_remote_code": True}}, __import__("trl").DPOConfig, {})
    assert not marker.exists()
    # with the spec's switch on, the folder's code is what loads (the test's own control)
    on = _run(folder, True)
    common.load_model(on, tokenizer=tokenizer)
    assert marker.read_text() == "remote code ran"
