"""The constitution loader: the bundled default, and one-line errors naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from runners.judges.constitution import (
    DEFAULT_CONSTITUTION,
    ConstitutionError,
    load_constitution,
    parse_constitution,
)


def test_default_constitution_has_eight_or_more_complete_principles():
    constitution = load_constitution()
    assert constitution.name == "harmless"
    assert Path(constitution.source) == DEFAULT_CONSTITUTION
    assert len(constitution.principles) >= 8
    assert len(set(constitution.names)) == len(constitution.names)
    for p in constitution.principles:
        assert len(p.critique.split()) >= 10 and "\n" not in p.critique, p.name
        assert len(p.revision.split()) >= 10 and "\n" not in p.revision, p.name
        assert p.revision.lower().startswith("rewrite"), p.name
    assert constitution.principle("privacy").name == "privacy"
    with pytest.raises(KeyError):
        constitution.principle("nope")


def test_the_default_is_shipped_as_package_data():
    import tomllib

    data = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["runners"]
    rel = DEFAULT_CONSTITUTION.relative_to(Path(__file__).resolve().parents[3] / "runners")
    assert any(rel.match(p) for p in patterns), patterns


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """\
name: mine
principles:
  - name: kind
    critique: Is it unkind?
    revision: Rewrite it kindly.
"""


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (GOOD.replace("    critique: Is it unkind?\n", ""), "principles[0].critique: missing"),
        (GOOD.replace("Rewrite it kindly.", "''"), "principles[0].revision: empty"),
        (GOOD.replace("revision:", "revison:"), "principles[0].revison: unknown field"),
        (GOOD.replace("name: mine\n", ""), "name: missing"),
        (GOOD + "  - name: kind\n    critique: a\n    revision: b\n", "principles[1].name: 'kind' is used"),
        ("name: mine\nprinciples: []\n", "principles: expected a non-empty list"),
        ("name: mine\n", "principles: missing"),
        (GOOD + "extra: 1\n", "extra: unknown field"),
        (GOOD.replace("Is it unkind?", "[1, 2]"), "principles[0].critique: expected text, got list"),
        ("name: [unclosed\n", "not valid YAML at line"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_bad_files_give_one_line_naming_file_and_field(tmp_path, text, field):
    path = _write(tmp_path, text)
    with pytest.raises(ConstitutionError) as info:
        load_constitution(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert field in message


def test_good_file_loads_and_missing_file_is_named(tmp_path):
    constitution = load_constitution(_write(tmp_path, GOOD))
    assert constitution.names == ["kind"]
    assert constitution.principles[0].revision == "Rewrite it kindly."
    with pytest.raises(ConstitutionError, match="nothere.yaml: constitution file not found"):
        load_constitution(tmp_path / "nothere.yaml")
    assert parse_constitution({"name": "x", "principles": [{"name": "a", "critique": "c", "revision": "r"}]}).name == "x"
