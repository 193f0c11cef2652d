"""`alignplan plan --model config.json` on generated config.json files (the supported model types with
sizes that are plausible, zero, negative, huge, of the wrong type, nested, missing; broken JSON): a plan
or one error line (exit 2), never a traceback."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignplan.cli import main
from planner.models import SUPPORTED_MODEL_TYPES

SIZE_KEYS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
             "vocab_size", "head_dim", "num_local_experts", "num_experts", "num_experts_per_tok",
             "moe_intermediate_size", "n_embd", "n_head", "n_layer", "max_position_embeddings")

odd = st.one_of(st.none(), st.booleans(), st.integers(-10**3, 0), st.integers(2**31, 10**200),
                st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6),
                st.lists(st.integers(1, 64), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
size = st.one_of(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128, 256, 1000]), st.integers(1, 4096), odd)
model_type = st.one_of(st.sampled_from(list(SUPPORTED_MODEL_TYPES)), st.sampled_from(list(SUPPORTED_MODEL_TYPES)),
                       odd)
TEMPLATES = [
    {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
     "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000},
    {"model_type": "mixtral", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
     "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 1000, "num_local_experts": 4,
     "num_experts_per_tok": 2},
    {"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 2, "vocab_size": 1000},
]
# A working config with 0 to 3 fields changed (a value, a type, a deletion), or any mapping at all.
mutated = st.tuples(st.sampled_from(TEMPLATES),
                    st.dictionaries(st.sampled_from(("model_type", *SIZE_KEYS)), st.one_of(size, model_type),
                                    max_size=3),
                    st.lists(st.sampled_from(SIZE_KEYS), max_size=1)).map(
    lambda t: {k: v for k, v in {**t[0], **t[1]}.items() if k not in t[2]})
configs = st.one_of(mutated, mutated, mutated,
                    st.fixed_dictionaries({"model_type": model_type}, optional={k: size for k in SIZE_KEYS}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(configs, st.integers(0, 40))
def test_plan_on_generated_config_files_never_tracebacks(capsys, cfg, cut):
    text = json.dumps(cfg)
    if cut == 1:
        text = text[: len(text) // 2]  # a truncated file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.json"
        path.write_text(text)
        code = main(["plan", "--model", str(path), "--json"])  # any other exception fails the test
    out, err = capsys.readouterr()
    assert code in (0, 2), (code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    else:
        assert json.loads(out)
    if os.environ.get("ALIGNPLAN_FUZZ_COUNT_DIR"):
        with open(Path(os.environ["ALIGNPLAN_FUZZ_COUNT_DIR"]) / "plan", "a") as fh:
            fh.write(f"{code} {err.strip()[:150]!r}\n")
