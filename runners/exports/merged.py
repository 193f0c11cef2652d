"""A finished run's model as a standalone model directory: `alignplan runs export RUN --merged OUT`.

A LoRA run's adapter is merged into its base model (the spec's model) with peft's merge_and_unload, the
same step a run with merge_lora takes at its end (recipes.common.write_merged); a full fine-tune's final
model, and a LoRA run that already merged, is copied as it is. Either way OUT gets the model, its
tokenizer and ALIGNPLAN_EXPORT.json (source run, base model, method, adapter config, dtype), loads with
AutoModelForCausalLM.from_pretrained(OUT) alone, and can be pushed to the Hugging Face Hub.

The export is written to a hidden directory beside OUT and renamed at the end, so a failure never
leaves a half-written OUT.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from runners.rundir.reader import RunDir

EXPORT_FILE = "ALIGNPLAN_EXPORT.json"
ADAPTER_CONFIG = "adapter_config.json"


class ExportError(ValueError):
    """An export that cannot be made; the message is one line naming the run, directory or option."""


def final_model(run: RunDir) -> Path:
    """The run's final model directory (result.json's final_model); ExportError when the run has not
    finished with one."""
    result = run.result() or {}
    status = result.get("status")
    if status != "succeeded":
        raise ExportError(f"run {run.id}: no final model (status {status or 'not finished'}); "
                          "only a succeeded run can be tried or exported")
    final = Path(str(result.get("final_model") or ""))
    if not result.get("final_model") or not final.is_dir():
        raise ExportError(f"run {run.id}: result.json's final_model {result.get('final_model')!r} is not a directory")
    return final


def trained_by(run: RunDir, final: Path) -> RunDir:
    """The run whose spec made the final model: the run itself, or, for a pipeline (no spec.yaml of its
    own; its final model is its last stage's), the stage directory above that final model."""
    if run.spec_path.is_file():
        return run
    for parent in list(final.parents)[:3]:
        if (parent / "spec.yaml").is_file():
            return RunDir(parent)
    raise ExportError(f"run {run.id}: no spec.yaml here or above its final model {final}; "
                      "try or export the stage that trained it")


def adapter_dir(final: Path) -> Path | None:
    """Where the run's LoRA adapter is: final/ itself (an unmerged LoRA run), final-adapter/ beside it
    (a run that merged at its end: final/ is then the whole model), or None (a full fine-tune)."""
    if (final / ADAPTER_CONFIG).is_file():
        return final
    beside = final.parent / f"{final.name}-adapter"
    return beside if (beside / ADAPTER_CONFIG).is_file() else None


def torch_dtype(run: RunDir):
    """The dtype the run trained its weights in (result.json's precision): bf16 weights stay bf16."""
    from runners.recipes.common import model_dtype

    return model_dtype(str((run.result() or {}).get("precision") or "fp32"))


def check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"--merged: {out_dir} exists and is not an empty directory; name a new directory")


def check_hub(repo: str | None) -> None:
    """Before any work: a push asked for while the hub is switched off is refused at once."""
    if repo is None:
        return
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise ExportError(f"--push-to-hub {repo}: the Hugging Face Hub is not reachable here (HF_HUB_OFFLINE is "
                          "set); export without --push-to-hub and upload the directory later")


def check_export(run_dir: str | Path, out_dir: str | Path, push_to_hub: str | None = None) -> tuple[RunDir, Path, Path]:
    """The refusals, before any work: (the run that trained the final model, that model, OUT resolved)."""
    run = RunDir(Path(run_dir))
    out = Path(out_dir).expanduser().resolve()
    final = final_model(run)
    check_out_dir(out)
    check_hub(push_to_hub)
    return trained_by(run, final), final, out


def merge_run(run_dir: str | Path, out_dir: str | Path, push_to_hub: str | None = None) -> dict[str, Any]:
    """Write the run's model, merged, to out_dir (see the module's docstring); returns what
    ALIGNPLAN_EXPORT.json records, plus 'out_dir' and, after a push, 'pushed_to'."""
    run, final, out = check_export(run_dir, out_dir, push_to_hub)
    spec = run.spec()
    adapter = adapter_dir(final)
    dtype = torch_dtype(run)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if adapter == final:
            kind = "lora-merged"
            _merge_adapter(spec.model, final, staging, dtype, spec.trust_remote_code)
        else:
            kind = "lora-merged-at-run-end" if adapter is not None else "full"
            shutil.copytree(final, staging)
        record = {
            "source_run": run.id,
            "base_model": spec.model,
            "method": spec.method,
            "kind": kind,
            "adapter": json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8")) if adapter else None,
            "dtype": str(dtype).removeprefix("torch."),
            "final_model": str(final),
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staging / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()  # empty, checked above
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record["out_dir"] = str(out)
    if push_to_hub:
        record["pushed_to"] = push(out, push_to_hub)
    return record


def _merge_adapter(base_model: str, adapter: Path, out: Path, dtype, trust_remote_code: bool) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from runners.recipes.common import write_merged

    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=dtype, trust_remote_code=trust_remote_code)
    write_merged(PeftModel.from_pretrained(base, str(adapter)), load_tokenizer(adapter, base_model), out)


def load_tokenizer(model_dir: Path, fallback: str):
    """The tokenizer the run saved beside its model, else the base model's."""
    from transformers import AutoTokenizer

    saved = model_dir / "tokenizer_config.json"
    return AutoTokenizer.from_pretrained(str(model_dir) if saved.is_file() else fallback)


def push(out: Path, repo: str) -> str:
    """Upload the export to the hub repo (created private when missing); ExportError, one line, when the
    hub cannot be reached or refuses."""
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(repo, private=True, exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=repo, commit_message=f"alignplan export of {out.name}")
    except Exception as exc:  # network, auth, or the hub saying no: the export on disk stands
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"--push-to-hub {repo}: not pushed ({first}); the export is in {out}") from None
    return f"https://huggingface.co/{repo}"
