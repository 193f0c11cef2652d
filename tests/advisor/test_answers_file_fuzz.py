"""`alignplan advise --answers FILE` on generated answer files (YAML or JSON text, valid answers, wrong
types, nested values, text that is not YAML): an answer or one error line (exit 2), never a traceback."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import advisor
from alignplan.cli import main

FW = advisor.framework()
KEYS = list(FW.questions)

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                            max_size=3), max_leaves=8)


def _answer(key: str):
    q = FW.questions[key]
    valid = {"choice": st.sampled_from(list(q.values or ["x"])), "bool": st.booleans(),
             "int": st.integers(min_value=q.minimum or 0, max_value=10**6)}.get(q.kind, scalars)
    return st.one_of(valid, valid, valid, valid, values)


DECISION = [k for k, q in FW.questions.items() if not q.hardware]
documents = st.one_of(
    st.fixed_dictionaries({k: _answer(k) for k in DECISION},
                          optional={k: _answer(k) for k in KEYS if k not in DECISION}),
    st.fixed_dictionaries({k: _answer(k) for k in DECISION},
                          optional={k: _answer(k) for k in KEYS if k not in DECISION}),
    st.fixed_dictionaries({}, optional={k: _answer(k) for k in KEYS}),
    st.dictionaries(st.text(max_size=8), values, max_size=4),
    values,
)
texts = st.one_of(
    documents.map(lambda d: ("yaml", d)),
    documents.map(lambda d: ("json", d)),
    st.text(max_size=200).map(lambda t: ("raw", t)),
)


def _write(kind: str, doc, folder: Path) -> Path:
    path = folder / ("answers.json" if kind == "json" else "answers.yaml")
    if kind == "json":
        path.write_text(json.dumps(doc, default=str))
    elif kind == "yaml":
        path.write_text(yaml.safe_dump(doc))
    else:
        path.write_text(doc)
    return path


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts)
def test_advise_on_generated_answer_files_never_tracebacks(capsys, item):
    kind, doc = item
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(kind, doc, Path(tmp))
        code = main(["advise", "--answers", str(path), "--json"])  # any other exception fails the test
    out, err = capsys.readouterr()
    assert code in (0, 2), (code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    else:
        assert json.loads(out)
    if os.environ.get("ALIGNPLAN_FUZZ_COUNT_DIR"):
        with open(Path(os.environ["ALIGNPLAN_FUZZ_COUNT_DIR"]) / "advise", "a") as fh:
            fh.write(f"{code} {err.strip()[:150]!r}\n")
