"""`alignplan run --spec FILE --dry-run` on generated spec files whose model is a folder holding a
generated config.json (tests/planner/test_config_file_fuzz.py's configs) and whose hparams are generated
too: a prepared run or one error line (exit 2), never a traceback."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignplan.cli import main
from runners.paths import RUNS_DIR_ENV
from runners.rundir.spec import RECIPE_METHODS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "planner"))
from test_config_file_fuzz import configs  # noqa: E402

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=8))
hparam_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                             | st.dictionaries(st.text(max_size=5), inner, max_size=2), max_leaves=6)
HPARAM_KEYS = ("learning_rate", "beta", "per_device_train_batch_size", "max_length", "report_to", "loss_type",
               "gradient_accumulation_steps", "model_init_kwargs", "num_generations", "warmup_steps", "nosuch")
specs = st.fixed_dictionaries(
    {"method": st.one_of(*[st.sampled_from(sorted(RECIPE_METHODS))] * 4, st.sampled_from(["dpo", "sft"]), scalars)},
    optional={"hparams": st.dictionaries(st.sampled_from(HPARAM_KEYS), hparam_values, max_size=3),
              "max_steps": st.one_of(st.integers(-2, 100), scalars), "devices": st.sampled_from(["cpu", "cpu", "auto", 0]),
              "num_processes": st.one_of(st.integers(1, 2), st.integers(-1, 4), scalars), "name": st.text(max_size=10),
              "num_train_epochs": st.one_of(st.floats(0, 3), scalars)})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(specs, configs)
def test_dry_run_on_generated_specs_and_configs_never_tracebacks(capsys, monkeypatch, spec, cfg):
    with tempfile.TemporaryDirectory() as tmp:
        monkeypatch.setenv(RUNS_DIR_ENV, str(Path(tmp) / "runs"))
        model = Path(tmp) / "model"
        model.mkdir()
        (model / "config.json").write_text(json.dumps(cfg))
        doc = {"model": str(model), "dataset": {"path": str(Path(tmp) / "prefs.jsonl")}, **spec}
        path = Path(tmp) / "spec.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        code = main(["run", "--spec", str(path), "--dry-run", "--json"])  # any other exception fails the test
    out, err = capsys.readouterr()
    assert code in (0, 2), (code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    if os.environ.get("ALIGNPLAN_FUZZ_COUNT_DIR"):
        with open(Path(os.environ["ALIGNPLAN_FUZZ_COUNT_DIR"]) / "run", "a") as fh:
            fh.write(f"{code} {err.strip()[:150]!r}\n")
