"""The data doctor on generated data sets with known properties: each property is found with the right
figure, and a clean data set gets no finding."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from runners.data import doctor

TOPICS = ["bread", "tea", "rice", "a bike", "a tent", "a garden", "a shelf", "a kite", "soup", "a map",
          "a lamp", "a fence", "a sail", "a clock", "a quilt", "a drum", "a violin", "a canoe", "a pond", "a roof"]
VERBS = ["make", "fix", "clean", "store", "choose", "paint", "move", "test", "plan", "check"]
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu amber basil cedar dune ember fern "
         "grove heath iris jade kelp lark moss nettle onyx pearl quartz reed sage thyme umber vale willow").split()


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def clean_pairs(n: int = 200, seed: int = 0) -> list[dict]:
    """Distinct prompts, varied answers of random lengths (chosen longer in about half the pairs), no
    markers, no duplicates."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = f"Question {i}: how do I {VERBS[i % 10]} {TOPICS[i % 20]} {words(rng, 3)}?"
        rows.append({"prompt": prompt, "chosen": f" Step {i}: {words(rng, rng.randint(8, 30))}.",
                     "rejected": f" Sorry {i}: {words(rng, rng.randint(8, 30))}."})
    return rows


def write(tmp_path: Path, rows: list[dict], name: str = "data.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def codes(report: dict) -> dict[str, dict]:
    return {f["code"]: f for f in report["findings"]}


def test_clean_generated_data_gets_no_finding(tmp_path):
    report = doctor.inspect(write(tmp_path, clean_pairs()))
    assert report["findings"] == []
    assert report["pairs"] == 200 and report["volume"]["distinct_prompts"] == 200
    assert report["format"]["name"] == "preference" and report["streamed"] is True
    assert 0.3 < report["biases"]["length"]["chosen_longer_share"] < 0.7
    json.dumps(report)  # the report is JSON as it is


def test_length_bias_found_with_its_share_and_mean_difference(tmp_path):
    rows = clean_pairs(100)
    for i, row in enumerate(rows):  # chosen 10 words longer in 92 of 100 pairs
        row["chosen"], row["rejected"] = (f" a{i} " + " w" * 20, f" b{i} " + " w" * 10) if i < 92 else \
            (f" a{i} " + " w" * 10, f" b{i} " + " w" * 20)
    report = doctor.inspect(write(tmp_path, rows))
    f = codes(report)["length_bias"]
    assert f["severity"] == "warning" and f["value"] == pytest.approx(0.92)
    assert "92%" in f["message"] and "DPO will learn length" in f["message"]
    assert report["biases"]["length"]["mean_difference"] == pytest.approx((92 * 10 - 8 * 10) / 100)


def test_exact_and_near_duplicates_counted(tmp_path):
    rows = clean_pairs(200)
    rows += [dict(rows[i]) for i in range(10)]  # 10 exact repeats
    for i in range(20, 30):  # 10 near-duplicates: one word changed in a long pair
        near = dict(rows[i])
        near["chosen"] = rows[i]["chosen"].replace("Step", "Stage", 1)
        rows.append(near)
    report = doctor.inspect(write(tmp_path, rows))
    found = codes(report)
    assert found["exact_duplicates"]["value"] == 10
    assert report["hygiene"]["exact_duplicates"]["largest_group"] == 2
    assert found["near_duplicates"]["value"] == 10
    assert report["hygiene"]["near_duplicates"]["checked"] == 220


def test_near_duplicates_function_ignores_exact_repeats_and_distinct_texts():
    base = ("the quick brown fox jumps over the lazy dog near the quiet river bank at dawn, then runs up the hill "
            "past the old mill and the bakery, and sleeps under the oak tree until the evening bells ring")
    texts = [base, base, base.replace("quick", "quack"), "something entirely different about boats and sails"]
    out = doctor.near_duplicates(texts)
    assert out["near_duplicates"] == 1 and out["examples"][0]["index"] == 2 and out["examples"][0]["like"] == 0


def test_split_column_leak_found(tmp_path):
    rows = clean_pairs(100)
    for i, row in enumerate(rows):
        row["split"] = "test" if i >= 80 else "train"
    for i in range(5):  # 5 of the 20 test prompts also appear in train (case and spacing changed)
        rows[80 + i]["prompt"] = "  " + rows[i]["prompt"].upper()
    report = doctor.inspect(write(tmp_path, rows))
    f = codes(report)["split_leak"]
    assert f["severity"] == "error" and f["value"] == 5
    assert report["hygiene"]["split_leak"]["heldout_prompts"] == 20


def test_eval_fraction_split_is_made_by_prompt_and_checks_case_variants(tmp_path):
    rows = clean_pairs(100)
    report = doctor.inspect(write(tmp_path, rows), eval_fraction=0.2)
    assert report["hygiene"]["split_leak"]["shared_prompts"] == 0
    assert report["hygiene"]["split_leak"]["heldout_prompts"] == 20
    rows += [{**r, "prompt": r["prompt"].lower()} for r in rows]  # each prompt twice, differing in case only
    report = doctor.inspect(write(tmp_path, rows, "twice.jsonl"), eval_fraction=0.2)
    assert report["hygiene"]["split_leak"]["shared_prompts"] > 0
    assert "split_leak" in codes(report)


def test_truncation_at_max_length_per_field(tmp_path):
    rows = clean_pairs(100)
    for i in range(7):  # 7 pairs whose chosen answer runs past 50 words with the prompt
        rows[i]["chosen"] = " " + words(random.Random(i), 60)
    rows[10]["prompt"] = "Q " + words(random.Random(1), 55)  # one prompt alone fills max_length
    report = doctor.inspect(write(tmp_path, rows), max_length=50)
    t = report["lengths"]["truncation"]
    assert t["counts"]["chosen"] == 8 and t["counts"]["prompt"] == 1 and t["counts"]["rejected"] == 1
    found = [f for f in report["findings"] if f["code"] == "truncated_at_max_length"]
    assert {f["field"]: f["value"] for f in found} == {"chosen": 8, "rejected": 1}
    assert codes(report)["prompt_over_max_length"]["severity"] == "error"
    sug = report["lengths"]["suggested_max_length"]
    assert sug["suggested"] >= sug["p99"] and sug["suggested"] % 8 == 0


def test_concentrated_rejected_answers(tmp_path):
    rows = clean_pairs(200)
    canned = [" I cannot help with that request at all.", " Please ask someone else about it today."]
    for i, row in enumerate(rows):
        row["rejected"] = canned[i % 2]
    report = doctor.inspect(write(tmp_path, rows))
    found = codes(report)
    assert found["rejected_concentrated"]["value"] == pytest.approx(2 / 200)
    assert report["hygiene"]["rejected"]["distinct"] == 2
    assert "rejected_ngram_marker" in found
    top = report["hygiene"]["rejected"]["top_ngrams"][0]
    assert top["rejected_share"] == pytest.approx(0.5) and top["chosen_share"] == 0


def test_multi_turn_pairs_with_differing_early_turns(tmp_path):
    rows = []
    for i in range(40):
        user = {"role": "user", "content": f"Plan a trip to place {i}."}
        follow = {"role": "user", "content": "And the budget?"}
        first_c = {"role": "assistant", "content": f"Day one: museum {i}."}
        first_r = {"role": "assistant", "content": f"Day one: beach {i}."} if i < 6 else first_c
        rows.append({"chosen": [user, first_c, follow, {"role": "assistant", "content": f"About {i} euros."}],
                     "rejected": [user, first_r, follow, {"role": "assistant", "content": f"No idea {i}."}]})
    report = doctor.inspect(write(tmp_path, rows))
    assert report["format"]["name"] == "preference-messages"
    assert report["structure"]["turns"] == {"4": 40}
    f = codes(report)["multi_turn_early_turns_differ"]
    assert f["value"] == 6 and "log-ratio" in f["message"]
    assert report["structure"]["early_turns_differ"]["examples"] == [1, 2, 3, 4, 5]


def test_hh_transcripts_with_different_histories_flagged():
    row = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Bye\n\nAssistant: Bye now.",
           "rejected": "\n\nHuman: Hi\n\nAssistant: Go away.\n\nHuman: Bye\n\nAssistant: Finally."}
    pair = doctor.read_pair(row, "hh-transcript")
    assert pair.early_turns_differ and pair.turns == 4


def test_identical_and_empty_fields_are_errors(tmp_path):
    rows = clean_pairs(50)
    rows[3]["rejected"] = rows[3]["chosen"]
    rows[4]["chosen"] = "   "
    rows.insert(6, "not json")  # type: ignore[arg-type]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    report = doctor.inspect(str(path))
    found = codes(report)
    assert found["identical_chosen_rejected"]["value"] == 1
    assert found["empty_fields"]["value"] == 1 and report["hygiene"]["empty_fields"]["counts"] == {"chosen": 1}
    assert found["bad_rows"]["value"] == 1 and report["bad_rows"]["examples"][0]["line"] == 7
    assert report["findings"][0]["severity"] == "error"


def test_marker_bias_and_user_word_list(tmp_path):
    rows = clean_pairs(100)
    for i in range(30):  # 30 chosen answers hedge, no rejected one does
        rows[i]["chosen"] += " Perhaps it depends."
    report = doctor.inspect(write(tmp_path, rows))
    f = codes(report)["hedging_bias"]
    assert f["value"] == 1.0 and report["biases"]["markers"]["hedging"]["differ"] == 30
    markers = tmp_path / "markers.yaml"
    markers.write_text("hedging: [zzz]\n", encoding="utf-8")
    loaded = doctor.load_markers(markers)
    assert loaded["hedging"] == ["zzz"] and "definitely" in loaded["confident"]
    assert "hedging_bias" not in codes(doctor.inspect(write(tmp_path, rows), markers=loaded))


def test_marker_pattern_whole_words_and_phrases():
    pattern = doctor.marker_pattern(["might", "i think"])
    assert doctor.count_markers("I  think it might; mighty not", pattern) == 2


def test_position_and_source_columns(tmp_path):
    rows = clean_pairs(100)
    for i, row in enumerate(rows):
        row["chosen_position"] = "first" if i < 80 else "second"
        row["source"] = "gpt" if i < 95 else "human"
    report = doctor.inspect(write(tmp_path, rows))
    found = codes(report)
    assert found["position_skew"]["value"] == pytest.approx(0.8) and found["position_skew"]["field"] == "chosen_position"
    assert found["source_skew"]["severity"] == "info" and found["source_skew"]["value"] == pytest.approx(0.95)


def test_volume_against_the_texts_guidance(tmp_path):
    guidance = {"min": 30000, "max": 100000, "basis": "factual", "source": "text"}
    report = doctor.inspect(write(tmp_path, clean_pairs(50)), task="factual", volume=guidance)
    f = codes(report)["volume_below_guidance"]
    assert f["value"] == 50 and "30,000-100,000" in f["message"]
    rows = clean_pairs(50) + [{**r, "chosen": r["chosen"] + " more"} for r in clean_pairs(50)]
    report = doctor.inspect(write(tmp_path, rows, "two.jsonl"))
    assert report["volume"]["pairs_per_prompt"] == {"mean": 2.0, "max": 2}


def test_reward_model_agreement_with_a_fake_scorer(tmp_path):
    rows = clean_pairs(100)
    report = doctor.inspect(write(tmp_path, rows), reward_scorer=lambda p, r: [float(len(x)) for x in r])
    rm = report["reward_model"]
    longer = sum(len(r["chosen"]) > len(r["rejected"]) for r in rows)
    assert rm["pairs"] == 100 and rm["agreement"] == pytest.approx(longer / 100)
    assert all(d["margin"] < 0 for d in rm["most_disagreed"])
    assert rm["most_disagreed"] == sorted(rm["most_disagreed"], key=lambda d: d["margin"])


def test_large_file_uses_a_sample_and_says_so(tmp_path):
    report = doctor.inspect(write(tmp_path, clean_pairs(300)), sample_size=50)
    assert report["sample"] == {"size": 50, "of": 300, "sampled": True, "seed": 42}
    assert any("sample of 50 of 300" in n for n in report["notes"])
    assert report["volume"]["pairs"] == 300 and report["hygiene"]["near_duplicates"]["checked"] == 50


def test_token_counts_follow_trl_for_strings_and_messages():
    class Tok:  # one token per character; EOS is "$"
        eos_token = "$"

        def __call__(self, text):
            return {"input_ids": [ord(c) for c in text]}

        def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
            text = "".join(f"<{m['role']}>{m['content']}" for m in messages) + ("<assistant>" if add_generation_prompt else "")
            return [ord(c) for c in text]

    count = doctor.token_counter(Tok())
    assert count(doctor.read_pair({"prompt": "abc", "chosen": "de", "rejected": "f"}, "preference")) == (3, 3, 2)
    conv = {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "yo"}],
            "rejected": [{"role": "assistant", "content": "no!"}]}
    # "<user>hi<assistant>" is the prompt; the answers are their contents
    assert count(doctor.read_pair(conv, "preference-conversational")) == (19, 2, 3)


def test_non_preference_data_is_an_error_finding(tmp_path):
    report = doctor.inspect(write(tmp_path, [{"prompt": "a"}, {"prompt": "b"}]))
    assert [f["code"] for f in report["findings"]] == ["format_not_pairs"]


def test_cli_json_has_the_documented_top_level_keys(tmp_path, capsys):
    from alignplan.cli import main

    path = write(tmp_path, clean_pairs(40))
    assert main(["data", "inspect", path, "--json", "--task", "style"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["schema"] == doctor.SCHEMA
    for key in ("source", "format", "pairs", "volume", "lengths", "biases", "hygiene", "structure", "findings",
                "summary", "plan"):
        assert key in out
    assert out["volume"]["guidance"]["min"] == 5000
    assert main(["data", "inspect", path, "--task", "nonsense"]) == 2


def test_advise_with_data_shows_the_doctor_summary(tmp_path, capsys):
    from alignplan.cli import main

    rows = clean_pairs(60)
    for row in rows:
        row["chosen"] += " " + "more words " * 20
    answers = tmp_path / "answers.yaml"
    answers.write_text("reward_signal: pairwise\ntask: style\nannotators: human\n", encoding="utf-8")
    assert main(["advise", "--answers", str(answers), "--data", write(tmp_path, rows), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    guidance = out["data_guidance"]
    assert guidance["have"] == 60 and "length_bias" in guidance["data_report"]["codes"]
    assert main(["advise", "--answers", str(answers), "--data", write(tmp_path, rows)]) == 0
    assert "Data doctor on" in capsys.readouterr().out
