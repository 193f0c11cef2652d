"""The Launch page's export section: the fewest nodes that fit, the placement, the export written
into a prepared run and handed over as a zip (alignplan/export_form.py)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from runners.exports.common import engines_for, fewest_nodes
from runners.rundir.spec import RunSpec

L70 = "meta-llama/Llama-3.1-70B"


def _spec(method="dpo", model=L70, **extra):
    from runners.demo.tiny import demo_data_paths

    data = demo_data_paths()["prompts" if method in ("ppo", "grpo", "rloo") else "preference"]
    return RunSpec.parse({"method": method, "model": model, "dataset": {"path": str(data)},
                          "hparams": {"max_length": 2048, "per_device_train_batch_size": 1}, **extra})


def test_fewest_nodes_is_the_first_node_count_whose_placement_fits():
    spec = _spec()
    nodes, placement = fewest_nodes(spec, "accelerate", gpus_per_node=8, gpu="A100-40GB")
    assert nodes > 1 and placement.fits and placement.nodes == nodes
    below, _ = fewest_nodes(spec, "accelerate", gpus_per_node=8, gpu="A100-40GB", max_nodes=nodes - 1)
    assert below is None


def test_engines_offered_first_are_what_runs_the_method():
    assert engines_for("dpo")[0] == "accelerate" and engines_for("ppo")[0] == "verl"
    assert engines_for("sft") == ["accelerate"] and "verl" not in engines_for("dpo")


def _page(spec_dict, local_fits):
    from alignplan.export_form import export_section
    from runners.rundir.spec import RunSpec

    export_section(RunSpec.parse(spec_dict), local_fits)


@pytest.mark.parametrize("gpu, nodes", [("A100-40GB", 2)])
def test_the_section_offers_the_export_and_a_zip_of_it(runs_dir, gpu, nodes):
    from streamlit.testing.v1 import AppTest

    spec = _spec()
    at = AppTest.from_function(_page, args=(spec.model_dump(mode="json"), False), default_timeout=60).run()
    assert not at.exception
    at.selectbox(key="export_gpu").set_value(gpu).run()
    want, _ = fewest_nodes(spec, "accelerate", gpus_per_node=8, gpu=gpu)
    assert want == nodes
    assert any(f"needs **{nodes} nodes**" in i.value for i in at.info)
    assert f"{nodes} node(s) x 8 {gpu}" in at.code[0].value
    at.button(key="export_write").click().run()
    assert not at.exception and not at.error
    assert "Export written to" in at.success[0].value
    statuses = at.dataframe[0].value
    assert dict(zip(statuses["check"], statuses["status"], strict=True))["accelerate_config_loader"] == "passed"
    result = at.session_state["launch_export_result"]
    names = zipfile.ZipFile(io.BytesIO(result["zip"])).namelist()
    assert "export-accelerate/accelerate.yaml" in names and "export-accelerate/job.sbatch" in names
    placement = json.loads(zipfile.ZipFile(io.BytesIO(result["zip"])).read("export-accelerate/placement.json"))
    assert placement["nodes"] == nodes and placement["fits"]
    assert (runs_dir / result["run_id"] / "spec.yaml").is_file()  # a prepared run, launched nowhere


def test_a_run_that_fits_here_keeps_the_section_folded(runs_dir, tiny_model_dir):
    from streamlit.testing.v1 import AppTest

    spec = _spec(model=str(tiny_model_dir))
    at = AppTest.from_function(_page, args=(spec.model_dump(mode="json"), True), default_timeout=60).run()
    assert not at.exception
    assert at.expander[0].proto.expanded is False
    assert any("Fits on one node" in c.value for c in at.caption)


def test_the_launch_page_offers_the_export_for_a_run_that_needs_nodes(app, runs_dir):
    at = app.run()
    at = at.switch_page("pages/launch.py").run()
    at.radio(key="launch_model_source").set_value("Hub id or local model directory").run()
    at.text_input(key="launch_model").set_value(L70).run()
    assert not at.exception
    # 70B DPO does not fit this machine: the export section is open and names the nodes it needs
    section = next(e for e in at.expander if e.label.startswith("Beyond this machine"))
    assert section.proto.expanded is True
    summary = next(c.value for c in at.code if "node(s) x 8 H100-80GB" in c.value)
    assert summary.startswith(f"dpo on {L70}") and "(fits)" in summary.splitlines()[0]
