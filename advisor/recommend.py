"""advise(answers) -> Recommendation: the outcome of the walk, explained with the user's own answers."""

from __future__ import annotations

import shlex
import string
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from advisor.framework import (
    AdvisorError,
    Framework,
    MissingAnswersError,
    Walk,
    answer_key,
    framework,
    validate_answers,
    walk,
)


@dataclass
class Recommendation:
    method: str  # outcome id (a planner method id)
    name: str
    summary: str
    why: list[str]
    data_guidance: dict[str, Any]
    caveats: list[dict[str, str]]
    alternatives: list[dict[str, str]]
    runner_up: str
    next_steps: list[str]
    preset: dict[str, Any]
    memory: dict[str, Any] | None = None
    path: list[str] = field(default_factory=list)
    answers: dict[str, Any] = field(default_factory=dict)  # the answers (and defaults) the path used
    ignored_answers: list[str] = field(default_factory=list)  # given but not on this path

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Template(dict):
    """format_map context that leaves unknown placeholders visible instead of raising."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(template: str, ctx: dict[str, Any]) -> str:
    return string.Formatter().vformat(" ".join(template.split()), (), _Template(ctx))


def _fmt_count(n: int) -> str:
    return f"{n:,}"


def answer_context(fw: Framework, used: dict[str, Any]) -> dict[str, str]:
    """{key} -> the answer as shown to the user, {key_label} -> its label."""
    ctx: dict[str, str] = {"task_label": "this task"}
    for key, value in used.items():
        q = fw.questions[key]
        if value is None:
            continue
        ctx[key] = _fmt_count(value) if q.kind == "int" else str(value)
        ctx[f"{key}_label"] = q.label(value)
    return ctx


# --- data guidance ---------------------------------------------------------------------------------


def outcome_method(fw: Framework, outcome: dict[str, Any]) -> str:
    return next(oid for oid, spec in fw.outcomes.items() if spec is outcome)


def data_mode(outcome: dict[str, Any], method: str, used: dict[str, Any]) -> str:
    """The outcome's data mode: a string, or the first {when, mode} whose `when` matches the answers."""
    spec = outcome["data"]
    if isinstance(spec, str):
        return spec
    for option in spec:
        when = option.get("when")
        conds = when if isinstance(when, list) else [when or {}]
        if any(_matches(c, method, used) for c in conds):
            return option["mode"]
    raise AdvisorError(f"outcomes.{method}.data: no mode matches the answers {used}")


def data_guidance(fw: Framework, outcome: dict[str, Any], used: dict[str, Any]) -> dict[str, Any]:
    """How much data the method needs (the text's volumes by task) and how much is still missing."""
    data = fw.data
    mode_id = data_mode(outcome, outcome_method(fw, outcome), used)
    mode = data["modes"][mode_id]
    task = used.get("task")
    ctx = answer_context(fw, used)
    out: dict[str, Any] = {
        "mode": mode_id,
        "unit": mode["unit"],
        "task": task,
        "range": None,
        "have": used.get("pairs"),
        "still_needed": None,
        "source": None,
        "notes": [],
        "collect": "",
    }
    if not mode.get("uses_pairs"):
        out["notes"].append(render(mode["note"], ctx))
        return out
    volume_key = data.get("task_volume", {}).get(task, "general")
    vol = data["volumes"][volume_key]
    lo, hi = int(vol["min"]), int(vol["max"])
    have = used.get("pairs")
    out["range"] = {"min": lo, "max": hi, "basis": volume_key}
    out["source"] = vol["source"]
    range_text = f"{_fmt_count(lo)}-{_fmt_count(hi)}"
    if have is None:
        need_text = range_text
    else:
        need_lo, need_hi = max(0, lo - have), max(0, hi - have)
        out["still_needed"] = {"min": need_lo, "max": need_hi}
        if need_hi == 0:
            need_text = "no more"
        elif need_lo == 0:
            need_text = f"up to {_fmt_count(need_hi)} more (you have the minimum)"
        else:
            need_text = f"{_fmt_count(need_lo)}-{_fmt_count(need_hi)} more"
    ctx.update(range_text=range_text, still_needed_text=need_text)
    template = mode["collect"]
    if mode_id == "reward" and used.get("reward_model") is True and "collect_with_rm" in mode:
        template = mode["collect_with_rm"]
    elif have is not None and out["still_needed"]["max"] == 0:
        template = data.get("enough", template)
    out["collect"] = render(template, ctx)
    if task in data.get("structure_note", {}):
        out["notes"].append(render(data["structure_note"][task], ctx))
    out["range_text"] = range_text
    return out


# --- caveats, alternatives, preset ---------------------------------------------------------------


def _matches(cond: dict[str, Any], method: str, used: dict[str, Any]) -> bool:
    for key, wanted in cond.items():
        wanted_list = wanted if isinstance(wanted, list) else [wanted]
        wanted_keys = {answer_key(w) for w in wanted_list}
        if key == "method":
            actual = method
        elif key in used and used[key] is not None:
            actual = answer_key(used[key])
        else:
            return False
        if actual not in wanted_keys:
            return False
    return True


def caveats_for(fw: Framework, method: str, used: dict[str, Any]) -> list[dict[str, str]]:
    """The caveats whose `when` matches (a dict: all keys; a list of dicts: any of them)."""
    out = []
    for cav in fw.caveats:
        when = cav.get("when") or {}
        conds = when if isinstance(when, list) else [when]
        if any(_matches(c, method, used) for c in conds):
            out.append({"id": cav["id"], "text": " ".join(str(cav["text"]).split()), "source": cav.get("source", "")})
    return out


def alternatives_for(fw: Framework, outcome_id: str) -> list[dict[str, str]]:
    outcome = fw.outcomes[outcome_id]
    out = []
    for alt in outcome["alternatives"]:
        m = alt["method"]
        out.append(
            {
                "method": m,
                "name": fw.outcomes.get(m, {}).get("name", m),
                "why_not": " ".join(str(alt["why_not"]).split()),
                "runner_up": m == outcome["runner_up"],
            }
        )
    return out


def _flag_value(v: Any) -> str:
    """A value as the runners read `--hparam KEY=VALUE` (a YAML scalar or flow list): 1e-6 must be written
    1.0e-06, since YAML reads '1e-6' as a string."""
    text = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def build_preset(
    fw: Framework,
    outcome: dict[str, Any],
    model: str | None,
    spec_file: str | None = None,
    used: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The runner preset: method id, hyper-parameters, a RunSpec-shaped dict and the `alignplan run` command
    line. With spec_file (where the caller writes run_spec), the command launches from that file."""
    spec = outcome["preset"]
    preset: dict[str, Any] = {"method": spec["method"], "hparams": dict(spec.get("hparams") or {})}
    if spec.get("reward"):
        preset["reward"] = dict(spec["reward"])
    if spec.get("note"):
        preset["note"] = " ".join(str(spec["note"]).split())
    if spec.get("judge"):
        preset["judge"], preset["judge_stage"] = dict(spec["judge"]), spec["judge_stage"]
    mode = fw.data["modes"][data_mode(outcome, outcome_method(fw, outcome), used or {})]
    if spec.get("stage"):
        return _pipeline_preset(fw, preset, spec["stage"], mode, model, spec_file, used or {})
    flags = "".join(" --hparam " + shlex.quote(f"{k}={_flag_value(v)}") for k, v in preset["hparams"].items())
    # RunSpec-shaped (runners/spec.py), so a UI can prefill a run without parsing the command line
    preset["run_spec"] = {
        "method": preset["method"],
        "model": model or "<model>",
        "dataset": {"path": mode.get("file", "<data.jsonl>")},
        "hparams": dict(preset["hparams"]),
        **({"reward": dict(preset["reward"])} if "reward" in preset else {}),
    }
    use_spec = spec_file is not None or "reward" in preset
    template = fw.command_template_spec if use_spec else fw.command_template
    preset["command"] = render(
        template,
        {
            "method": preset["method"],
            "model": shlex.quote(model) if model else "<model>",
            "data": mode.get("file", "<data.jsonl>"),
            "hparam_flags": flags,
            "spec_file": shlex.quote(spec_file or fw.spec_file),
        },
    )
    if use_spec:
        preset["spec_file"] = spec_file or fw.spec_file
    return preset


def _placeholder_or_quoted(value: str) -> str:
    """'<model>'-style placeholders stay as they are (the user replaces them); real values are quoted."""
    return value if value.startswith("<") and value.endswith(">") else shlex.quote(value)


def _pipeline_preset(
    fw: Framework,
    preset: dict[str, Any],
    stage: str,
    mode: dict[str, Any],
    model: str | None,
    spec_file: str | None,
    used: dict[str, Any],
) -> dict[str, Any]:
    """A preset that runs a pipeline of the runners (rlhf: sft -> rm -> ppo): its hparams are one stage's,
    its data sets are the data mode's pipeline_data, a model given in place of a stage comes from `given`
    (or `given_with_rm` when the answers say reward-model infrastructure exists). run_spec is
    PipelineSpec-shaped (runners/pipelines/spec.py)."""
    data = {k: str(v) for k, v in (mode.get("pipeline_data") or {}).items()}
    given = dict(mode.get("given") or {})
    if used.get("reward_model") is True:
        given.update(mode.get("given_with_rm") or {})
    given = {k: str(v) for k, v in given.items()}
    preset["stage"] = stage
    preset["data"], preset["given"] = data, given
    stages: dict[str, dict[str, Any]] = {}
    judge = preset.get("judge")
    if judge:  # the labelling stage's judge (RLAIF): a placeholder the user replaces with theirs
        stages[preset["judge_stage"]] = {"judge": dict(judge)}
    stages[stage] = {"hparams": dict(preset["hparams"])}
    preset["run_spec"] = {
        "method": preset["method"],
        "model": model or "<model>",
        "data": {k: {"path": v} for k, v in data.items()},
        **({"given": dict(given)} if given else {}),
        "stages": stages,
    }
    if spec_file is not None:
        preset["spec_file"] = spec_file
        preset["command"] = render(fw.command_template_spec, {"spec_file": shlex.quote(spec_file)})
        return preset
    flags = fw.pipeline_flags
    data_flags = "".join(f" {flags['data'][k]} {_placeholder_or_quoted(v)}" for k, v in data.items())
    data_flags += "".join(f" {flags['given'][k]} {_placeholder_or_quoted(v)}" for k, v in given.items())
    if judge:
        value = judge.get("function") if judge["kind"] == "function" else judge.get("model")
        data_flags += f" {flags['judge'][judge['kind']]} {_placeholder_or_quoted(str(value))}"
    hparam_flags = "".join(
        " --hparam " + shlex.quote(f"{stage}.{k}={_flag_value(v)}") for k, v in preset["hparams"].items()
    )
    preset["command"] = render(
        fw.pipeline_command_template,
        {"method": preset["method"], "model": shlex.quote(model) if model else "<model>", "data_flags": data_flags,
         "hparam_flags": hparam_flags},
    )
    return preset


# --- advise --------------------------------------------------------------------------------------


def _decide(fw: Framework, answers: dict[str, Any]) -> tuple[Walk, Walk | None]:
    w = walk(answers, use_defaults=True, fw=fw)
    if w.missing:
        raise MissingAnswersError(w.missing, w.possible)
    hw = walk(answers, start=fw.after, use_defaults=True, fw=fw) if fw.after else None
    return w, hw


def advise(answers: dict[str, Any], *, fw: Framework | None = None, spec_file: str | None = None) -> Recommendation:
    """The recommendation for these answers. Raises AdvisorError (a ValueError) on unknown keys or values,
    MissingAnswersError when the path needs answers that are not there. `fw`: another framework file's
    contents (default: the packaged advisor/framework.yaml). `spec_file`: the preset's command launches from
    this RunSpec file (the caller writes `preset["run_spec"]` there)."""
    fw = fw or framework()
    checked = validate_answers(answers, fw)
    w, hw = _decide(fw, checked)
    assert w.outcome is not None
    oid = w.outcome
    outcome = fw.outcomes[oid]
    used = dict(w.used)
    hardware = dict(hw.used) if hw else {}
    model = hardware.get("model")
    ctx = answer_context(fw, used)
    ctx["model"] = model or "your model"

    guidance = data_guidance(fw, outcome, used)
    preset = build_preset(fw, outcome, model, spec_file, used)
    ctx.update(
        collect_step=guidance["collect"],
        range_text=guidance.get("range_text", ""),
        command=preset["command"],
    )
    why = ["because " + render(t, ctx) for _, t in w.why]
    # a step that renders empty (the data step where the method collects nothing) is no step at all
    next_steps = [step for step in (render(s, ctx) for s in outcome["next_steps"]) if step.strip()]
    memory = None
    if model:
        from advisor.memory import memory_section

        memory = memory_section(
            fw,
            method=oid,
            runner_up=outcome["runner_up"],
            fallbacks=list(outcome.get("fit_fallbacks") or []),
            preset_method=preset["method"],
            model=model,
            gpu=hardware.get("gpu"),
            gpus=hardware.get("gpus"),
            assumed=tuple(k for k in ("gpu", "gpus") if checked.get(k) is None),
        )
    on_path = set(w.asked) | (set(hw.asked) if hw else set())
    ignored = [k for k, v in checked.items() if k not in on_path and v is not None]
    return Recommendation(
        method=oid,
        name=outcome["name"],
        summary=" ".join(str(outcome["summary"]).split()),
        why=why,
        data_guidance=guidance,
        caveats=caveats_for(fw, oid, used),
        alternatives=alternatives_for(fw, oid),
        runner_up=outcome["runner_up"],
        next_steps=next_steps,
        preset=preset,
        memory=memory,
        path=list(w.path),
        answers={**used, **{k: v for k, v in hardware.items() if v is not None}},
        ignored_answers=ignored,
    )
