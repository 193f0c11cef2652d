"""tree_graph for the app, and the data guidance numbers from the reference text."""

from __future__ import annotations

import pytest

import advisor


def test_tree_graph_has_every_question_node_and_outcome_and_consistent_edges():
    g = advisor.tree_graph()
    fw = advisor.framework()
    ids = {n["id"] for n in g["nodes"]}
    assert set(fw.outcomes) <= ids
    assert {n["id"] for n in g["nodes"] if n["kind"] == "question"} == {
        nid for nid, n in fw.nodes.items() if not fw.questions[n.question].hardware
    }
    for e in g["edges"]:
        assert e["source"] in ids and e["target"] in ids and e["label"]
    # answers that lead to the same place share one edge
    merged = next(e for e in g["edges"] if e["id"] == "n_pw_task->n_annot")
    assert set(merged["answers"]) == {"style", "format", "qa", "factual", "code_math"}
    assert g["path"] == [fw.start] and g["pending"] == fw.start and g["outcome"] is None


def test_tree_graph_highlights_the_path_taken():
    answers = {"reward_signal": "none", "task": "safety", "annotators": "none", "principles": True}
    g = advisor.tree_graph(answers)
    assert g["path"] == ["n_signal", "n_none_task", "n_safety_annot", "n_principles", "cai"]
    assert g["path_edges"] == [f"{a}->{b}" for a, b in zip(g["path"], g["path"][1:], strict=False)]
    assert g["outcome"] == "cai" and g["pending"] is None
    highlighted = {n["id"] for n in g["nodes"] if n["highlighted"]}
    assert highlighted == set(g["path"])
    assert {e["id"] for e in g["edges"] if e["highlighted"]} == set(g["path_edges"])
    node = next(n for n in g["nodes"] if n["id"] == "n_principles")
    assert node["answer"] is True


def test_tree_graph_stops_at_the_pending_question_or_uses_defaults():
    answers = {"reward_signal": "pairwise", "task": "qa", "annotators": "human", "pairs": 10}
    g = advisor.tree_graph(answers)
    assert g["pending"] == "n_failure" and g["outcome"] is None
    g = advisor.tree_graph(answers, use_defaults=True)
    assert g["outcome"] == "dpo" and g["path"][-1] == "dpo"


@pytest.mark.parametrize(
    "task, pairs, rng, needed",
    [
        ("style", 2000, (5000, 10000), (3000, 8000)),  # the brief's example
        ("style", 7000, (5000, 10000), (0, 3000)),
        ("style", 12000, (5000, 10000), (0, 0)),
        ("factual", 10000, (30000, 100000), (20000, 90000)),
        ("qa", 0, (10000, 50000), (10000, 50000)),
        ("format", 15000, (10000, 50000), (0, 35000)),
    ],
)
def test_data_guidance_ranges_and_what_is_still_needed(task, pairs, rng, needed):
    rec = advisor.advise({"reward_signal": "pairwise", "task": task, "annotators": "human", "pairs": pairs})
    g = rec.data_guidance
    assert (g["range"]["min"], g["range"]["max"]) == rng
    assert (g["still_needed"]["min"], g["still_needed"]["max"]) == needed
    assert g["have"] == pairs
    assert g["source"].startswith("text,")
    if needed[1] == 0:
        assert "not volume" in g["collect"]
    elif needed[0] == 0:
        assert f"up to {needed[1]:,} more" in g["collect"]
    else:
        assert f"{needed[0]:,}-{needed[1]:,} more" in g["collect"]
    assert g["collect"] in rec.next_steps[0]


def test_style_with_2000_pairs_needs_3000_to_8000_more_in_words():
    rec = advisor.advise({"reward_signal": "pairwise", "task": "style", "annotators": "human", "pairs": 2000})
    assert "Collect 3,000-8,000 more preference pairs (5,000-10,000 in total for style and tone)" in (
        rec.data_guidance["collect"]
    )


def test_multi_turn_guidance_is_structure_over_volume():
    rec = advisor.advise({"reward_signal": "pairwise", "task": "multi_turn", "reward_model": False,
                          "annotators": "human", "pairs": 1000})
    g = rec.data_guidance
    assert g["range"]["basis"] == "general"
    assert any("structure, not just volume" in n for n in g["notes"])


def test_generated_pairs_have_a_target_but_no_count_in_hand():
    rec = advisor.advise({"reward_signal": "none", "task": "factual", "annotators": "none"})
    g = rec.data_guidance
    assert g["mode"] == "generated_judge"
    assert (g["range"]["min"], g["range"]["max"]) == (30000, 100000)
    assert g["have"] is None and g["still_needed"] is None
    assert "30,000-100,000" in g["collect"]


def test_methods_without_pairs_say_so():
    for answers, mode in [({"reward_signal": "verifiable"}, "prompts_verifiable"),
                          ({"reward_signal": "binary"}, "unpaired"),
                          ({"reward_signal": "scalar", "reward_model": False, "task": "qa"}, "scored")]:
        g = advisor.advise(answers).data_guidance
        assert g["mode"] == mode and g["range"] is None and g["notes"]


def test_ppo_with_existing_reward_model_needs_prompts_not_labels():
    rec = advisor.advise({"reward_signal": "pairwise", "task": "multi_turn", "reward_model": True, "pairs": 500})
    assert rec.method == "ppo"
    assert "reward-model infrastructure supplies the reward" in rec.data_guidance["collect"]


def test_docs_name_every_node_and_outcome_of_the_framework():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "advisor.md").read_text()
    fw = advisor.framework()
    for name in list(fw.nodes) + list(fw.outcomes) + list(fw.questions):
        assert f"`{name}`" in doc or f"{name} (" in doc or f"▶ {name}" in doc, name


@pytest.mark.parametrize(
    "answers, mode, phrase",
    [
        ({"reward_signal": "episode"}, "episode", "scores whole conversations"),
        ({"reward_signal": "scalar", "reward_model": True}, "reward_infra", "reward-model infrastructure scores"),
        ({"reward_signal": "scalar", "reward_model": False, "task": "multi_turn"}, "scored_rm", "Train a reward model"),
        ({"reward_signal": "pairwise", "task": "multi_objective", "pairs": 4000}, "reward", "6,000-46,000 more"),
    ],
)
def test_ppo_data_guidance_depends_on_where_the_reward_comes_from(answers, mode, phrase):
    rec = advisor.advise(answers)
    assert rec.method == "ppo"
    g = rec.data_guidance
    assert g["mode"] == mode
    assert phrase in " ".join(g["notes"] + [g["collect"]])
