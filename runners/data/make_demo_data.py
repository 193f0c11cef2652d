"""Write the bundled demo data sets and the tokenizer corpus from templates.

Run from the repository root:  python runners/data/make_demo_data.py
The output is deterministic (fixed seed), so re-running it reproduces the committed files.

The preference is style, not length: every chosen answer is polite and on topic (an opening such as
"Sure!" and the task's advice); every rejected answer is dismissive or off topic and uses its own
vocabulary ("ugh", "whatever", "nope", ...), built from parts so that no two are the same and each
names its own task. Length says nothing: half the pairs have the longer answer chosen (a full
answer against a curt brush-off), half the shorter (one helpful sentence against a long rant).
Every chosen and every rejected answer is different, so a held-out split by prompt (the runners'
split) holds out answers never seen in training. A two-layer model picks the style up in a few dozen
DPO steps, which is what the demo and the tests need.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261127

# (task, helpful one-sentence answer). Written for this project.
TOPICS: list[tuple[str, str]] = [
    ("boil pasta", "bring salted water to a rolling boil, add the pasta and stir it now and then until it is tender"),
    ("water a cactus", "soak the soil fully, then wait until it is completely dry before watering again"),
    ("read a paper map", "find north, match two landmarks to the map and follow the roads between them"),
    ("brew green tea", "use water just below boiling and steep the leaves for about two minutes"),
    ("fix a flat bicycle tyre", "remove the tube, find the hole in a bowl of water, patch it and pump it up again"),
    ("start a vegetable garden", "pick a sunny spot, loosen the soil and begin with easy crops like beans and lettuce"),
    ("learn a new language", "practise a little every day, speak early and review words with spaced repetition"),
    ("write a cover letter", "open with the role you want, give two concrete results and close with a clear request"),
    ("save money on groceries", "plan meals for the week, shop with a list and buy staples in bulk"),
    ("fall asleep faster", "keep a regular bedtime, dim the lights early and leave the phone in another room"),
    ("clean a cast iron pan", "rinse it with hot water, scrub with salt, dry it on the stove and wipe on a little oil"),
    ("prepare for an interview", "research the team, practise short stories about your work and prepare two questions"),
    ("back up my photos", "keep one copy on an external drive and another in a second place such as cloud storage"),
    ("train a puppy to sit", "hold a treat above its nose, move it back slowly and reward the moment it sits"),
    ("make a budget", "list your income, subtract fixed costs and give every remaining amount a purpose"),
    ("bake bread at home", "mix flour, water, salt and yeast, let it rise twice and bake it in a hot oven"),
    ("stay focused while studying", "work in short blocks with breaks and keep only one task open at a time"),
    ("choose a running shoe", "try shoes late in the day, jog a few steps and pick the pair that feels comfortable"),
    ("reduce screen glare", "lower the brightness, move the screen away from windows and use a matte cover"),
    ("write a short poem", "choose one clear image, keep the lines short and read it aloud to hear the rhythm"),
    ("plan a weekend trip", "set a budget, book the place to sleep first and leave room for a slow afternoon"),
    ("care for a houseplant", "give it bright indirect light, water when the top soil is dry and dust the leaves"),
    ("make a cup of coffee", "grind the beans fresh, use hot water and let it brew for about four minutes"),
    ("organise my desk", "clear everything off, keep only daily tools within reach and store the rest in boxes"),
    ("learn to juggle", "start with one ball, throw it from hand to hand at eye level, then add a second ball"),
    ("paint a small room", "cover the floor, tape the edges, paint the ceiling first and then the walls"),
    ("keep bread fresh", "store it in a paper bag at room temperature and freeze slices you will not eat soon"),
    ("give a short talk", "open with one question, make three points and end by repeating the main idea"),
    ("sharpen a kitchen knife", "hold the blade at a steady low angle and draw it across the stone in even strokes"),
    ("warm up before exercise", "walk briskly for five minutes, then do easy leg swings and arm circles"),
    ("write clear emails", "put the request in the first line, keep paragraphs short and say what happens next"),
    ("take better phone photos", "clean the lens, tap to focus on the subject and keep the light behind you"),
    ("compost kitchen scraps", "mix green scraps with dry leaves, keep the pile damp and turn it every week"),
    ("remember names", "repeat the name when you hear it and link it to something you notice about the person"),
    ("cook rice", "rinse the rice, use about one and a half cups of water per cup and simmer it covered"),
    ("set up a home network", "place the router in the centre of the home, change the password and update it"),
    ("reduce food waste", "check the fridge before shopping, cook leftovers first and freeze what you cannot use"),
    ("learn to swim", "start in shallow water, practise floating and breathing, then add simple kicks"),
    ("tidy a closet", "take everything out, keep what you wore this year and give the rest away"),
    ("make a salad dressing", "whisk three parts oil with one part vinegar, a little mustard and a pinch of salt"),
]

QUESTIONS = [
    "How do I {task}?",
    "Can you tell me how to {task}?",
    "What is a good way to {task}?",
    "Any tips on how to {task}?",
    "I want to {task}. Where should I start?",
    "Please explain how to {task}.",
]

POLITE_OPENINGS = ["Sure!", "Happy to help!", "Of course!", "Good question!", "Certainly!"]
POLITE_CLOSINGS = ["Hope this helps.", "Hope this helps, good luck.", "Hope this helps, have fun."]

# Rejected answers are put together from these parts (a brush-off, the task named, a digression, a
# dismissal), so each one is different and names its task; each part carries a rude marker word or is
# off topic.
RUDE_OPENERS = ["Ugh.", "Nope.", "Whatever.", "Ugh, seriously?", "Nope, not today.", "Whatever, fine.",
                "Ugh, again?", "Go away."]
BRUSH_OFFS = [
    "Why would I explain how to {task}?",
    "Nobody cares how you {task}.",
    "Figure out how to {task} yourself.",
    "Asking how to {task} is boring.",
    "I am not your servant, {task} on your own.",
    "Search for how to {task}, whatever.",
]
DIGRESSIONS = [
    "Bananas are yellow and my cat likes loud jazz on Tuesdays.",
    "The moon is made of old cheese, everyone knows that.",
    "My neighbour owns seven red umbrellas and never opens them.",
    "Purple trains honk at midnight near the old bridge.",
    "Tuesdays are for bananas and nothing else.",
    "I once counted every pigeon in the square and lost track at forty.",
    "The fridge hums a tune nobody wants to hear.",
    "Socks vanish in the dryer, and that is the real mystery.",
]
DISMISSALS = ["Whatever.", "Go away.", "Nope.", "Ugh.", "Not my problem, whatever.", "Stop asking, ugh."]

CORPUS_PARAGRAPHS = """\
A language model learns to predict the next word from a large amount of text.
Alignment asks the model to prefer answers that people find helpful, honest and harmless.
Preference data pairs a prompt with a chosen answer and a rejected answer.
Direct preference optimisation raises the likelihood of the chosen answer relative to a frozen reference.
Reinforcement learning from human feedback first trains a reward model and then optimises the policy against it.
A reward model reads a prompt and an answer and returns a single score.
Proximal policy optimisation keeps the new policy close to the old one with a clipped objective.
Group relative policy optimisation samples several answers per prompt and compares each to the group mean.
The reference model is a frozen copy of the starting policy; it keeps the policy from drifting too far.
Supervised fine tuning teaches the model the format of a conversation before preference training starts.
Memory on a GPU holds the weights, the gradients, the optimizer states and the activations.
Mixed precision keeps a full precision copy of the weights and computes in half precision.
Gradient checkpointing trades extra compute for lower activation memory.
Low rank adapters train a small number of extra weights and leave the base model frozen.
A quantised base model stores its frozen weights in four bits to save memory.
Data parallel training runs one copy of the model on every device and averages the gradients.
The learning rate sets how far each optimizer step moves the weights.
A checkpoint saves the weights and the optimizer so that training can resume later.
The user asks a question and the assistant answers it.
The system message tells the assistant how to behave.
A good answer is polite, short and on topic.
A bad answer is rude, or it talks about something else entirely.
Sure! Happy to help! Of course! Good question! Certainly! Hope this helps.
Ugh. Whatever. Nope. Go away. Bananas. Tuesdays. Umbrellas. Purple trains. Pigeons. Socks.
Numbers: zero one two three four five six seven eight nine ten eleven twelve twenty hundred thousand.
0 1 2 3 4 5 6 7 8 9 10 100 1000 2048 4096 8192
Punctuation: . , ; : ! ? ( ) [ ] { } " ' - _ / \\ | @ # $ % ^ & * + = < > ~
The quick brown fox jumps over the lazy dog while the cat sleeps in the sun.
On a rainy morning the baker opened the shop and the smell of bread filled the street.
The river runs past the old mill, under two bridges and into the sea.
Children played in the park until the lamps came on and their parents called them home.
The train was late, so she read a book about mountains and rivers.
He planted tomatoes, beans and lettuce in the small garden behind the house.
A map, a compass and a bottle of water are enough for a short walk in the hills.
The meeting started with a question and ended with a plan.
Write the request first, then the reason, then the next step.
Every answer in the good set ends with the same friendly sign off.
"""


def polite_long(rng: random.Random, task: str, answer: str) -> str:
    return f" {rng.choice(POLITE_OPENINGS)} To {task}, {answer}. {rng.choice(POLITE_CLOSINGS)}"


def polite_short(rng: random.Random, task: str, answer: str) -> str:
    """One helpful sentence: the first step of the answer."""
    first = answer.split(", ")[0].split(" and ")[0]
    return f" {rng.choice(POLITE_OPENINGS)} {first[0].upper()}{first[1:]}."


def rude_short(rng: random.Random, task: str) -> str:
    return f" {rng.choice(RUDE_OPENERS)} {rng.choice(BRUSH_OFFS).format(task=task)}"


def rude_long(rng: random.Random, task: str) -> str:
    return (f" {rng.choice(RUDE_OPENERS)} {rng.choice(BRUSH_OFFS).format(task=task)} "
            f"{' '.join(rng.sample(DIGRESSIONS, 2))} {rng.choice(DISMISSALS)}")


def preference_rows(rng: random.Random) -> list[dict[str, str]]:
    """One pair per (task, question); the chosen answer is the longer one in half of them, and no
    chosen or rejected answer appears twice."""
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    index = 0
    for task, answer in TOPICS:
        for template in QUESTIONS:
            prompt = "Question: " + template.format(task=task) + "\nAnswer:"
            chosen_longer = index % 2 == 0
            index += 1
            for _ in range(1000):
                if chosen_longer:
                    chosen, rejected = polite_long(rng, task, answer), rude_short(rng, task)
                else:
                    chosen, rejected = polite_short(rng, task, answer), rude_long(rng, task)
                if (len(chosen) > len(rejected)) == chosen_longer and not {chosen, rejected} & seen:
                    break
            else:
                raise RuntimeError(f"no new answer pair for {prompt!r}")
            seen.update((chosen, rejected))
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    rng.shuffle(rows)
    return rows


def kto_rows(pairs: list[dict[str, str]]) -> list[dict[str, object]]:
    """Unpaired data: each pair gives one desirable and one undesirable completion."""
    rows: list[dict[str, object]] = []
    for pair in pairs[:40]:
        rows.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
        rows.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
    return rows


def prompt_rows(pairs: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"prompt": pair["prompt"]} for pair in pairs[:60]]


def sft_rows(rng: random.Random) -> list[dict[str, object]]:
    rows = []
    for task, answer in TOPICS:
        question = rng.choice(QUESTIONS).format(task=task)
        reply = f"{rng.choice(POLITE_OPENINGS)} To {task}, {answer}. {rng.choice(POLITE_CLOSINGS)}"
        rows.append({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]})
    return rows


def corpus_lines(pairs: list[dict[str, str]]) -> list[str]:
    lines = CORPUS_PARAGRAPHS.splitlines()
    for task, answer in TOPICS:
        lines.append(f"To {task}, {answer}.")
        for template in QUESTIONS:
            lines.append(template.format(task=task))
    lines.extend(RUDE_OPENERS + DIGRESSIONS + DISMISSALS + POLITE_OPENINGS + POLITE_CLOSINGS)
    lines.extend(b.format(task=task) for b in BRUSH_OFFS for task, _ in TOPICS[:5])
    return lines


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def main(out_dir: Path = HERE) -> None:
    rng = random.Random(SEED)
    pairs = preference_rows(rng)
    write_jsonl(out_dir / "demo_preferences.jsonl", pairs)
    write_jsonl(out_dir / "demo_kto.jsonl", kto_rows(pairs))
    write_jsonl(out_dir / "demo_prompts.jsonl", prompt_rows(pairs))
    write_jsonl(out_dir / "demo_sft.jsonl", sft_rows(rng))
    (out_dir / "corpus.txt").write_text("\n".join(corpus_lines(pairs)) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
