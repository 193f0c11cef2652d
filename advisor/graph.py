"""tree_graph(answers): the decision tree as nodes and edges, with the path the answers take, for drawing."""

from __future__ import annotations

from typing import Any

from advisor.framework import Framework, answer_key, framework, validate_answers, walk


def _edges(fw: Framework) -> list[dict[str, Any]]:
    """One edge per (node, target); answers that lead to the same target share it."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for node in fw.nodes.values():
        if fw.questions[node.question].hardware:
            continue
        for answer, b in node.branches.items():
            _add(merged, node.id, b.to, answer, b.label)
        for b in node.ranges:
            _add(merged, node.id, b.to, b.label, b.label)
        if node.next is not None:
            _add(merged, node.id, node.next.to, "*", "any answer")
        if node.skip is not None:
            _add(merged, node.id, node.skip.to, "skip", "skipped")
    return list(merged.values())


def _add(merged: dict, source: str, target: str | None, answer: str, label: str) -> None:
    if target is None:
        return
    key = (source, target)
    edge = merged.setdefault(
        key, {"id": f"{source}->{target}", "source": source, "target": target, "answers": [], "label": ""}
    )
    edge["answers"].append(answer)
    edge["label"] = ", ".join(edge["answers"]) if answer != "*" else "any answer"


def tree_graph(answers: dict[str, Any] | None = None, *, use_defaults: bool = False) -> dict[str, Any]:
    """{"nodes": [...], "edges": [...], "path": [node ids], "path_edges": [edge ids], "outcome", "pending"}.

    Question nodes carry the question key and text; outcome nodes the method name. `path` holds the nodes
    the answers so far lead through (ending at the next question, or at the outcome); each node and edge has
    `highlighted` for the app. With use_defaults, unanswered optional questions take their default (the
    path advise() takes); without, the path stops at them, as the step API does.
    """
    fw = framework()
    checked = validate_answers(answers or {})
    w = walk(checked, use_defaults=use_defaults)
    path = list(w.path)
    on_path = set(path)
    nodes: list[dict[str, Any]] = []
    for node in fw.nodes.values():
        q = fw.questions[node.question]
        if q.hardware:
            continue
        nodes.append(
            {
                "id": node.id,
                "kind": "question",
                "question": q.key,
                "label": q.text,
                "answer": w.used.get(q.key) if node.id in on_path and node.id != w.pending else None,
                "highlighted": node.id in on_path,
                "pending": node.id == w.pending,
            }
        )
    for oid, spec in fw.outcomes.items():
        nodes.append(
            {
                "id": oid,
                "kind": "outcome",
                "method": oid,
                "label": spec["name"],
                "highlighted": oid == w.outcome,
                "pending": False,
            }
        )
    edges = _edges(fw)
    path_edges = [f"{source}->{target}" for source, target in zip(path, path[1:], strict=False)]
    taken = set(path_edges)
    for e in edges:
        e["highlighted"] = e["id"] in taken
        # the answer that chose this edge, when it is on the path
        if e["highlighted"]:
            q = fw.questions[fw.nodes[e["source"]].question]
            value = w.used.get(q.key)
            e["taken_answer"] = answer_key(value) if value is not None else None
    return {
        "start": fw.start,
        "nodes": nodes,
        "edges": edges,
        "path": path,
        "path_edges": path_edges,
        "outcome": w.outcome,
        "pending": w.pending,
    }
