"""Each recipe's defaults are its method's published ones, from runners/recipes/defaults.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.recipes.defaults import METHOD_DEFAULTS, SOURCES, method_defaults
from runners.rundir.spec import RECIPE_METHODS

pytest.importorskip("trl")


def _config(method, tiny_model_dir, demo_data, make_run_dir, hparams=None):
    from runners.recipes import common, trl_compat

    spec_path = make_run_dir(method=method, model=str(tiny_model_dir), dataset={"path": str(demo_data["preference"])},
                             hparams=hparams or {}, max_steps=1, devices="cpu")
    run = common.start(method, ["--spec", str(spec_path)])
    config_cls, forced = trl_compat.config_for(method)
    return common.build_config(run, config_cls, forced=forced)


def test_simpo_gets_the_papers_beta_and_margin(tiny_model_dir, demo_data, make_run_dir) -> None:
    config = _config("simpo", tiny_model_dir, demo_data, make_run_dir)
    published = METHOD_DEFAULTS["simpo"]
    assert (config.beta, config.simpo_gamma, config.cpo_alpha, config.loss_type) == (
        published["beta"], published["simpo_gamma"], published["cpo_alpha"], "simpo")
    assert config.beta == 2.0 and config.simpo_gamma / config.beta == 0.5  # not CPO's beta 0.1
    config = _config("simpo", tiny_model_dir, demo_data, make_run_dir, hparams={"beta": 2.5})
    assert config.beta == 2.5  # the spec's hparams still win


def test_dpo_keeps_trls_published_defaults(tiny_model_dir, demo_data, make_run_dir) -> None:
    config = _config("dpo", tiny_model_dir, demo_data, make_run_dir)
    assert (config.beta, config.learning_rate) == (0.1, 1e-6) and method_defaults("dpo") == {}


def test_every_method_names_a_source_and_the_docs_list_them() -> None:
    training = [m for m in RECIPE_METHODS if m not in ("generate", "cai-generate", "rlaif-label")]
    assert set(training) <= set(SOURCES)
    doc = (Path(__file__).parents[2] / "docs" / "runners.md").read_text(encoding="utf-8")
    assert "runners/recipes/defaults.py" in doc
    for method, values in METHOD_DEFAULTS.items():
        for key, value in values.items():
            assert f"{key} {value}" in doc, (method, key)
