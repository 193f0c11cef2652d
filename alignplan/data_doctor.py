"""The data doctor as the CLI and the app use it: runners.data.doctor's report, with the text's volume
guidance for the task (from the advisor's framework.yaml, where those figures live) and the planner's
memory plan at the suggested maximum length.

    report = data_doctor.run("pairs.jsonl", model="Qwen/Qwen2.5-0.5B", task="factual", max_length=1024)
    print(data_doctor.render_text(report))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners.data import doctor

GIB = 2**30


def volume_guidance(task: str | None) -> dict[str, Any] | None:
    """{min, max, basis, source} for the task: the reference text's range, as the advisor reads it."""
    if not task:
        return None
    import advisor

    fw = advisor.framework()
    tasks = fw.questions["task"].values
    if task not in tasks:
        raise ValueError(f"--task {task!r} is not a task the advisor knows; accepted: {', '.join(tasks)}")
    basis = fw.data.get("task_volume", {}).get(task, "general")
    vol = fw.data["volumes"][basis]
    return {"min": int(vol["min"]), "max": int(vol["max"]), "basis": basis, "source": vol["source"]}


def memory_plan(model: str | None, method: str, seq_len: int, gpu: str | None = None, gpus: int = 1
                ) -> dict[str, Any] | None:
    """planner.estimate at seq_len (the suggested maximum length): per-GPU peak and whether it fits."""
    if not model:
        return None
    import planner

    plan = planner.estimate(planner.PlanRequest(model=model, method=method, seq_len=seq_len, gpu=gpu, gpus=gpus),
                            with_min_gpus=gpu is not None)
    return {"model": model, "method": method, "seq_len": seq_len, "gpu": plan.gpu, "gpus": gpus,
            "peak_bytes_per_gpu": plan.peak_bytes_per_gpu, "peak_gib_per_gpu": round(plan.peak_bytes_per_gpu / GIB, 2),
            "peak_phase": plan.peak_phase, "fits": plan.fits, "components": plan.components,
            "min_gpus": plan.min_gpus}


def run(path: str, *, model: str | None = None, method: str = "dpo", task: str | None = None,
        max_length: int = 1024, eval_fraction: float = 0.0, markers: str | Path | dict[str, list[str]] | None = None,
        reward_model: str | None = None, sample_size: int = doctor.DEFAULT_SAMPLE_SIZE, gpu: str | None = None,
        gpus: int = 1, plan_model: str | None = None, trust_remote_code: bool = False) -> dict[str, Any]:
    """The doctor's report on path, with report['plan']: the memory plan at the suggested max length for
    plan_model (default: model), or the reason there is none."""
    tokenizer = doctor.load_tokenizer(model, trust_remote_code) if model else None
    scorer = doctor.load_reward_scorer(reward_model) if reward_model else None
    report = doctor.inspect(path, method=method, task=task, max_length=max_length, tokenizer=tokenizer,
                            model_name=model, eval_fraction=eval_fraction,
                            markers=markers if isinstance(markers, dict) else doctor.load_markers(markers),
                            sample_size=sample_size, volume=volume_guidance(task), reward_scorer=scorer,
                            reward_model_name=reward_model)
    report["plan"] = None
    suggested = (report.get("lengths") or {}).get("suggested_max_length", {}).get("suggested")
    target = plan_model or model
    if suggested and target:
        try:
            report["plan"] = memory_plan(target, method, suggested, gpu, gpus)
        except ValueError as exc:  # a model the planner cannot read: the report stands without a plan
            report["plan"] = {"error": str(exc), "seq_len": suggested}
    return report


def render_text(report: dict[str, Any]) -> str:
    """The report as the CLI prints it: figures first, then the findings, most severe first."""
    lines = [f"Data doctor: {report['source']}",
             f"  format {report['format']['name']} ({report['format']['description']}); "
             f"{'streamed line by line' if report['streamed'] else 'loaded whole'}"]
    for note in report.get("notes", []):
        lines.append(f"  note: {note}")
    if "volume" in report:
        v = report["volume"]
        lines.append(f"Volume: {v['pairs']:,} pairs, {v['distinct_prompts']:,} distinct prompts, "
                     f"{v['pairs_per_prompt']['mean']} pairs per prompt (max {v['pairs_per_prompt']['max']})")
        g = v.get("guidance")
        if g:
            lines.append(f"  guidance for {v['task']}: {g['min']:,}-{g['max']:,} pairs ({g['source']})")
        ln = report["lengths"]
        lines.append(f"Lengths in {ln['unit']}" + (f" ({ln['tokenizer']})" if ln["tokenizer"] else "")
                     + f", over {ln['pairs_counted']:,} pairs:")
        lines.append(f"  {'field':<22}{'mean':>8}{'p50':>8}{'p90':>8}{'p95':>8}{'p99':>8}{'max':>8}")
        for name, q in ln["fields"].items():
            lines.append(f"  {name:<22}" + "".join(f"{q[k]:>8.0f}" if k != "mean" else f"{q[k]:>8.1f}"
                                                   for k in ("mean", "p50", "p90", "p95", "p99", "max")))
        t = ln["truncation"]
        lines.append(f"  over max_length {t['max_length']}: " + ", ".join(
            f"{k} {t['counts'][k]} ({doctor.pct(t['shares'][k])})" for k in ("prompt", "chosen", "rejected")))
        s = ln["suggested_max_length"]
        lines.append(f"  suggested max_length {s['suggested']} (p95 {s['p95']}, p99 {s['p99']} of prompt + longer answer)")
        plan = report.get("plan")
        if plan and "error" not in plan:
            fits = {True: "fits", False: "does NOT fit", None: "no GPU chosen"}[plan["fits"]]
            lines.append(f"  memory plan at {plan['seq_len']}: {plan['method']} on {plan['model']}: "
                         f"{plan['peak_gib_per_gpu']:.1f} GiB per GPU peak ({plan['peak_phase']})"
                         + (f", {fits} on {plan['gpu']}" if plan["gpu"] else ""))
        elif plan:
            lines.append(f"  memory plan at {plan['seq_len']}: not available ({plan['error']})")
        b = report["biases"]
        lb = b["length"]
        lines.append(f"Biases: chosen longer in {doctor.pct(lb['chosen_longer_share'])} of pairs, shorter in "
                     f"{doctor.pct(lb['chosen_shorter_share'])}, mean difference {lb['mean_difference']:+.1f}")
        for kind, mb in b["markers"].items():
            lines.append(f"  {kind} markers: chosen {doctor.pct(mb['chosen_with_marker_share'])} / rejected "
                         f"{doctor.pct(mb['rejected_with_marker_share'])} of answers; counts differ in "
                         f"{doctor.pct(mb['differ_share'])} of pairs, chosen has more in {doctor.pct(mb['chosen_more_share'])}")
        for col, sk in b["columns"].items():
            tops = ", ".join(f"{t['value']!r} {doctor.pct(t['share'])}" for t in sk["top"][:3])
            lines.append(f"  {sk['kind']} column {col!r}: {tops}")
        h = report["hygiene"]
        lines.append(f"Hygiene: {h['identical_pairs']['count']} identical chosen/rejected, empty fields "
                     f"{h['empty_fields']['counts'] or 'none'}, {h['exact_duplicates']['count']} exact duplicate pairs, "
                     f"{h['near_duplicates']['near_duplicates']} near-duplicates of {h['near_duplicates']['checked']} checked")
        if h["split_leak"]:
            sl = h["split_leak"]
            lines.append(f"  held-out split ({sl['by']}): " + (sl.get("error") or
                         f"{sl['shared_prompts']} of {sl['heldout_prompts']} held-out prompts also in training"))
        r = h["rejected"]
        lines.append(f"  rejected answers: {r['distinct']:,} distinct for {r['pairs']:,} pairs (ratio "
                     f"{r['distinct_ratio']:.2f}); top {r['n']}-grams: " + "; ".join(
                         f"'{g['ngram']}' {doctor.pct(g['rejected_share'])}" for g in r["top_ngrams"][:3]))
        s2 = report["structure"]
        lines.append(f"Structure: turns per example {s2['turns']}; multi-turn pairs {s2['multi_turn_pairs']}; "
                     f"earlier turns differ in {s2['early_turns_differ']['count']}")
        rm = report.get("reward_model")
        if rm:
            lines.append(f"Reward model {rm['model']}: agrees with {doctor.pct(rm['agreement'])} of {rm['pairs']} pairs")
            for d in rm["most_disagreed"][:3]:
                lines.append(f"  read first: line/row {d['index']} (margin {d['margin']:+.3f}): {d['prompt'][:60]!r}")
    findings = report.get("findings", [])
    lines.append(f"Findings ({len(findings)}):" if findings else "Findings: none")
    for f in findings:
        lines.append(f"  [{f['severity']}] {f['code']}: {f['message']}")
    lines.append(f"({report.get('seconds', 0):.1f} s)")
    return "\n".join(lines)
