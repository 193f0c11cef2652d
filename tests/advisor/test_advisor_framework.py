"""The framework file, walked as data: reachability, coverage, no cycles, and extension without engine changes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

import advisor
from advisor.framework import FRAMEWORK_PATH, AdvisorError, answer_key, load_framework, walk

FW = advisor.framework()
DECISION_NODES = [n for n in FW.nodes.values() if not FW.questions[n.question].hardware]


def _answers_of(question) -> list:
    """Every answer a node can branch on (ints: one representative)."""
    if question.kind == "choice":
        return list(question.values)
    if question.kind == "bool":
        return [True, False]
    if question.kind == "int":
        return [question.minimum or 0]
    return []


def _all_paths(node_id: str, stack: tuple[str, ...] = ()):
    """Every root-to-leaf path as [(node id, answer)], failing on a cycle."""
    assert node_id not in stack, f"cycle: {' -> '.join(stack + (node_id,))}"
    node = FW.nodes[node_id]
    q = FW.questions[node.question]
    for value in _answers_of(q):
        branch = node.branches.get(answer_key(value)) or node.next
        assert branch is not None, f"{node_id}: answer {value!r} leads nowhere"
        if branch.to in FW.outcomes:
            yield [(node_id, value)], branch.to
        else:
            assert branch.to in FW.nodes, f"{node_id}: {value!r} -> unknown {branch.to!r}"
            for rest, outcome in _all_paths(branch.to, stack + (node_id,)):
                yield [(node_id, value)] + rest, outcome


ALL_PATHS = list(_all_paths(FW.start))


def test_every_outcome_is_reachable_from_the_start():
    reached = {outcome for _, outcome in ALL_PATHS}
    assert reached == set(FW.outcomes)
    assert {"dpo", "ipo", "ppo", "rlaif", "cai", "grpo", "rloo", "kto", "orpo", "simpo"} <= reached


def test_every_answer_of_every_decision_question_leads_to_a_node_or_outcome():
    for node in DECISION_NODES:
        q = FW.questions[node.question]
        for value in _answers_of(q):
            branch = node.branches.get(answer_key(value)) or node.next
            assert branch is not None and (branch.to in FW.nodes or branch.to in FW.outcomes), (node.id, value)


def test_every_decision_node_is_on_some_path_and_no_path_repeats_a_question():
    visited = {nid for path, _ in ALL_PATHS for nid, _ in path}
    assert visited == {n.id for n in DECISION_NODES}
    for path, outcome in ALL_PATHS:
        keys = [FW.nodes[nid].question for nid, _ in path]
        assert len(keys) == len(set(keys)), (keys, outcome)


def test_every_path_gives_a_complete_recommendation_with_no_unfilled_template():
    for path, outcome in ALL_PATHS:
        answers = {FW.nodes[nid].question: value for nid, value in path}
        rec = advisor.advise(answers)
        assert rec.method == outcome
        text = advisor.render_text(rec)
        assert "{" not in " ".join(rec.why + rec.next_steps + [rec.data_guidance["collect"], text]), answers
        assert rec.why and rec.next_steps and rec.alternatives and rec.preset["method"]
        # the answers that decided the path are exactly those asked on it (plus defaults)
        assert set(answers) <= set(rec.answers)


def test_questions_and_outcomes_use_the_planner_method_ids():
    planner = pytest.importorskip("planner")
    assert set(FW.outcomes) <= set(planner.METHODS)
    for spec in FW.outcomes.values():
        assert spec["runner_up"] in planner.METHODS
        for alt in spec["alternatives"]:
            assert alt["method"] in planner.METHODS


def test_walk_detects_a_cycle(tmp_path: Path):
    raw = yaml.safe_load(FRAMEWORK_PATH.read_text())
    raw["nodes"]["n_annot"]["branches"]["human"]["to"] = "n_pw_task"  # n_pw_task -> n_annot -> n_pw_task
    path = tmp_path / "fw.yaml"
    path.write_text(yaml.safe_dump(raw))
    fw = load_framework(path)
    with pytest.raises(AdvisorError, match="cycle"):
        walk({"reward_signal": "pairwise", "task": "style", "annotators": "human"}, fw=fw)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda raw: raw["nodes"]["n_annot"]["branches"]["human"].update(to="nowhere"), "unknown 'nowhere'"),
        (lambda raw: raw["nodes"]["n_annot"]["branches"].pop("none"), r"no branch for \['none'\]"),
        (lambda raw: raw["nodes"]["n_signal"].update(question="colour"), "unknown question 'colour'"),
        (lambda raw: raw["outcomes"]["dpo"].pop("preset"), "outcomes.dpo needs 'preset'"),
        (lambda raw: raw["outcomes"]["dpo"].update(data="vibes"), "outcomes.dpo.data: unknown data mode 'vibes'"),
    ],
)
def test_a_broken_framework_file_is_rejected_with_the_place_named(tmp_path: Path, edit, message):
    raw = yaml.safe_load(FRAMEWORK_PATH.read_text())
    edit(raw)
    path = tmp_path / "fw.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(AdvisorError, match=message):
        load_framework(path)


def test_a_new_question_and_outcome_need_only_a_data_edit(tmp_path: Path):
    """Add a question (`budget`) and an outcome (`online-dpo`) in YAML; the engine walks them unchanged."""
    raw = yaml.safe_load(FRAMEWORK_PATH.read_text())
    raw["questions"]["budget"] = {
        "kind": "choice",
        "text": "Can you afford online generation during training?",
        "values": {"yes": "yes", "no": "no"},
    }
    raw["nodes"]["n_budget"] = {
        "question": "budget",
        "branches": {
            "yes": {"to": "online-dpo", "why": "you can afford online generation ({budget_label})"},
            "no": {"to": "dpo", "why": "you cannot afford online generation"},
        },
    }
    raw["nodes"]["n_failure"]["branches"]["none"]["to"] = "n_budget"
    online = dict(raw["outcomes"]["dpo"], name="Online DPO", preset={"method": "online-dpo", "hparams": {}})
    raw["outcomes"]["online-dpo"] = online
    path = tmp_path / "fw.yaml"
    path.write_text(yaml.safe_dump(raw))
    fw = load_framework(path)
    base = {"reward_signal": "pairwise", "task": "qa", "annotators": "human", "pairs": 100}
    with pytest.raises(advisor.MissingAnswersError) as err:
        advisor.advise(base, fw=fw)
    assert err.value.missing == ["budget"]
    rec = advisor.advise({**base, "budget": "yes"}, fw=fw)
    assert rec.method == "online-dpo"
    assert rec.why[-1] == "because you can afford online generation (yes)"
    assert advisor.advise({**base, "budget": "no"}, fw=fw).method == "dpo"


def test_the_paths_cover_the_answer_space_without_dead_ends():
    """Brute force over every combination of decision answers: each one either reaches an outcome or is
    missing nothing (answers off the path are ignored, never an error)."""
    keys = ["reward_signal", "task", "annotators", "reward_model", "principles"]
    spaces = [_answers_of(FW.questions[k]) for k in keys]
    seen = set()
    for combo in itertools.product(*spaces):
        answers = dict(zip(keys, combo, strict=True), pairs=0)
        rec = advisor.advise(answers)
        seen.add(rec.method)
    assert seen == set(FW.outcomes) - {"ipo", "simpo", "orpo"}  # those three need a failure_mode answer


def test_yes_no_answers_go_through_the_shared_parser_and_keep_a_prompts_y_n():
    from advisor.framework import parse_answer

    q = next(q for q in advisor.framework().questions.values() if q.kind == "bool")
    for raw, value in ((True, True), ("y", True), (" Yes ", True), ("on", True), (1, True),
                       ("n", False), ("FALSE", False), ("off", False), ("0", False)):
        assert parse_answer(q, raw) is value, raw
    for raw in ("maybe", "2", 1.5):
        with pytest.raises(AdvisorError) as err:
            parse_answer(q, raw)
        assert str(err.value).startswith(f"{q.key}: ") and "accepted: true or false (yes/no)" in str(err.value)
