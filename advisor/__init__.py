"""alignplan's advisor: which alignment method fits a team's reward signal, task, annotators, data and
hardware. The decision framework is data (advisor/framework.yaml); this package walks it.

    import advisor
    rec = advisor.advise({"reward_signal": "pairwise", "task": "style", "annotators": "human", "pairs": 2000})
    rec.method, rec.why, rec.data_guidance, rec.caveats, rec.alternatives, rec.next_steps, rec.preset
    advisor.step(answers)          # the next question (one at a time, for UIs) and progress
    advisor.tree_graph(answers)    # nodes, edges and the path taken, for drawing

Never imports torch; imports the planner only for the memory check.
"""

from advisor import questions
from advisor.framework import (
    AdvisorError,
    Framework,
    MissingAnswersError,
    Question,
    framework,
    load_framework,
    validate_answers,
)
from advisor.graph import tree_graph
from advisor.memory import fixes_for, fixes_to_fit, runner_unsharded_methods
from advisor.questions import Step, answer, back, next_question, progress, restart, step
from advisor.recommend import Recommendation, advise
from advisor.render import fix_line, render_text

__all__ = [
    "AdvisorError", "Framework", "MissingAnswersError", "Question", "Recommendation", "Step", "advise", "fix_line",
    "fixes_for", "fixes_to_fit", "answer", "back", "framework", "load_framework", "next_question", "progress",
    "questions", "render_text", "restart", "runner_unsharded_methods", "step", "tree_graph", "validate_answers",
]
