"""Shared fixtures: the tiny model (built once per session), bundled demo data, run directories."""

from __future__ import annotations

import os

# Few threads: the CI machine has 2 cores shared by several jobs, and tiny models gain nothing from more.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# Plans in tests use the default efficiency factors, never this user's ~/.config/alignplan/calibration.yaml
# (a test that calibrates points ALIGNPLAN_CALIBRATION at its own file).
os.environ["ALIGNPLAN_CALIBRATION"] = os.path.join(os.sep, "nonexistent", "alignplan-test-calibration.yaml")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama + tokenizer: $ALIGNPLAN_TINY_MODEL when set (reused across sessions), else a tmp dir."""
    from runners.demo.tiny import TINY_MODEL_DIR_ENV, build_tiny_model

    target = os.environ.get(TINY_MODEL_DIR_ENV)
    out = Path(target) if target else tmp_path_factory.mktemp("tiny") / "tiny-model"
    return build_tiny_model(out)


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty runs root for the test ($ALIGNPLAN_RUNS_DIR), with no fake GPUs from the environment."""
    from runners.paths import RUNS_DIR_ENV

    root = tmp_path / "runs"
    monkeypatch.setenv(RUNS_DIR_ENV, str(root))
    monkeypatch.delenv("ALIGNPLAN_FAKE_GPUS", raising=False)
    return root


@pytest.fixture(scope="session")
def demo_data() -> dict[str, Path]:
    """Bundled samples: 'preference', 'kto', 'prompts', 'sft' -> JSONL path."""
    from runners.demo.tiny import demo_data_paths

    return demo_data_paths()


def write_run_dir(run_dir: Path, **spec_fields: Any) -> Path:
    """Create run_dir with spec.yaml for RunSpec(**spec_fields); returns the spec path."""
    from runners.rundir.spec import RunSpec

    run_dir.mkdir(parents=True, exist_ok=True)
    spec = RunSpec.parse(spec_fields)
    path = run_dir / "spec.yaml"
    spec.dump(path)
    return path


@pytest.fixture
def make_run_dir(tmp_path: Path) -> Callable[..., Path]:
    """make_run_dir(name="run", **RunSpec fields) -> spec.yaml path in a fresh run directory."""

    def make(name: str = "run", **spec_fields: Any) -> Path:
        return write_run_dir(tmp_path / "runs" / name, **spec_fields)

    return make




def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip tests marked gpu when there is no CUDA GPU; torch is imported only when such a test runs."""
    if item.get_closest_marker("gpu") is None:
        return
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
