"""Glue the Streamlit pages share: cached planner calls, query parameters <-> plan inputs, errors.

No domain logic lives here: every number comes from planner, advisor or runners. The functions that
do not draw anything (the query-parameter conversions, the request builder) are plain and tested.
"""

from __future__ import annotations

import os
import tempfile
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

import planner as _planner  # pure Python, never imports torch
from planner import terms as _planner_terms

T = TypeVar("T")

GIB = 2**30

# Session-state keys of the sidebar widgets (app.py); every page reads them.
MODEL_KEY = "model"
GPU_KEY = "gpu"
GPUS_KEY = "gpus"

DEFAULT_MODEL = "meta-llama/Llama-3.1-8B"
DEFAULT_GPU = "H100-80GB"

# Plan page inputs: name -> default. The names are also the query-parameter names and, prefixed
# with "plan_", the widget keys.
PLAN_DEFAULTS: dict[str, Any] = {
    "methods": ["dpo", "ppo"],
    "precision": "bf16",
    "adapter": "full",  # full | lora | qlora
    "rank": 16,
    "seq": 2048,
    "batch": 1,
    "ckpt": True,
    "optimizer": "adamw",
    "nodes": 1,
    "zero": 0,
    "engine": "deepspeed",
    "offload": "none",
}
SHARED_DEFAULTS: dict[str, Any] = {MODEL_KEY: DEFAULT_MODEL, GPU_KEY: DEFAULT_GPU, GPUS_KEY: 1}

ADAPTERS = ("full", "lora", "qlora")
PRECISIONS = tuple(_planner.PRECISIONS)  # the planner's ids, shared with the runners
OPTIMIZERS = tuple(_planner_terms.OPTIMIZERS)
OFFLOADS = ("none", "optimizer", "params")  # "none" stands for the planner's offload=None
ENGINES = ("deepspeed", "fsdp")
ZERO_STAGES = (0, 1, 2, 3)

# The same ranges as the widgets' (a value outside a widget's range would fail the widget).
MAX_GPUS_PER_NODE = _planner.MAX_GPUS_PER_NODE
_INT_LIMITS = {"rank": (1, 1024), "seq": (1, 1_048_576), "batch": (1, 4096), "nodes": (1, 1024),
               GPUS_KEY: (1, MAX_GPUS_PER_NODE)}


# --- query parameters <-> inputs -----------------------------------------------------------------


def _parse_int(name: str, raw: str) -> int:
    lo, hi = _INT_LIMITS.get(name, (0, 2**31))
    value = int(raw)
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value} is outside {lo}..{hi}")
    return value


def _parse_bool(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no value: {raw!r}")


def inputs_from_query(params: Mapping[str, str], methods: Mapping[str, Any] | None = None,
                      gpus: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Read the plan inputs a shared link carries.

    Returns (values for the names present and valid, one problem line per ignored parameter). A bad
    parameter never stops the page: it is reported and the default stays.
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    choices = {"precision": PRECISIONS, "adapter": ADAPTERS, "offload": OFFLOADS, "optimizer": OPTIMIZERS,
               "engine": ENGINES}
    for name, raw in params.items():
        raw = str(raw)
        try:
            if name == "methods":
                ids = [m for m in (x.strip() for x in raw.split(",")) if m]
                unknown = [m for m in ids if methods is not None and m not in methods]
                if unknown:
                    raise ValueError(f"unknown method(s) {', '.join(unknown)}")
                values[name] = ids
            elif name in ("rank", "seq", "batch", "nodes", GPUS_KEY):
                values[name] = _parse_int(name, raw)
            elif name == "zero":
                stage = int(raw)
                if stage not in ZERO_STAGES:
                    raise ValueError(f"accepted: {', '.join(map(str, ZERO_STAGES))}")
                values[name] = stage
            elif name == "ckpt":
                values[name] = _parse_bool(raw)
            elif name in choices:
                if raw not in choices[name]:
                    raise ValueError(f"accepted: {', '.join(choices[name])}")
                values[name] = raw
            elif name == GPU_KEY:
                if gpus is not None and raw not in gpus:
                    raise ValueError(f"unknown GPU; accepted: {', '.join(gpus)}")
                values[name] = raw
            elif name == MODEL_KEY:
                if not raw.strip():
                    raise ValueError("empty model id")
                values[name] = raw.strip()
            # other parameters (from other pages or tools) are not ours: ignore them silently
        except ValueError as exc:
            problems.append(f"link parameter {name}={raw!r} ignored: {exc}")
    return values, problems


def query_from_inputs(values: Mapping[str, Any]) -> dict[str, str]:
    """The query parameters that reproduce these inputs: only the ones that differ from the defaults."""
    defaults = {**PLAN_DEFAULTS, **SHARED_DEFAULTS}
    out: dict[str, str] = {}
    for name, default in defaults.items():
        if name not in values or values[name] == default:
            continue
        value = values[name]
        if isinstance(value, bool):
            out[name] = "1" if value else "0"
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = str(value)
    return out


def request_kwargs(values: Mapping[str, Any], model: str, gpu: str, gpus: int) -> dict[str, Any]:
    """planner.PlanRequest keyword arguments (without the method) for the plan inputs."""
    adapter = values.get("adapter", "full")
    offload = values.get("offload", "none")
    return {
        "model": model,
        "seq_len": int(values.get("seq", PLAN_DEFAULTS["seq"])),
        "batch_size": int(values.get("batch", PLAN_DEFAULTS["batch"])),
        "precision": values.get("precision", PLAN_DEFAULTS["precision"]),
        "lora_rank": int(values.get("rank", PLAN_DEFAULTS["rank"])) if adapter in ("lora", "qlora") else None,
        "quant": "nf4" if adapter == "qlora" else None,
        "grad_ckpt": bool(values.get("ckpt", True)),
        "optimizer": values.get("optimizer", "adamw"),
        "zero": int(values.get("zero", 0)),
        "engine": values.get("engine", "deepspeed"),
        "offload": None if offload == "none" else offload,
        "gpu": gpu,
        "gpus": int(gpus),
        "nodes": int(values.get("nodes", 1)),
    }


# --- errors --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What attempt() returns: ok, and the value when ok."""

    ok: bool
    value: Any = None


def show_error(what: str, exc: BaseException) -> None:
    """Input errors (ValueError) show their message, which names the field; anything else shows a
    short line, with the details folded away: never a raw traceback on the page."""
    if isinstance(exc, ValueError):
        st.error(f"{what}: {exc}", icon=":material/error:")
        return
    st.error(f"{what} failed unexpectedly ({type(exc).__name__}). Details below; please report it.",
             icon=":material/bug_report:")
    with st.expander("Error details"):
        st.code("".join(traceback.format_exception_only(type(exc), exc)).strip() + "\n\n"
                + "".join(traceback.format_tb(exc.__traceback__)[-4:]), language="text")


def attempt(what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Outcome:
    """Call fn; on failure show the error (show_error) and return Outcome(False)."""
    try:
        return Outcome(True, fn(*args, **kwargs))
    except Exception as exc:  # every failure becomes a message on the page
        show_error(what, exc)
        return Outcome(False)


# --- planner, cached ----------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=512)
def compare_plans(request: tuple[tuple[str, Any], ...], methods: tuple[str, ...]) -> dict[str, Any]:
    """planner.compare for a hashable request; Plan objects, one per method."""
    import planner

    req = planner.PlanRequest(method=methods[0], **dict(request))
    return planner.compare(req, list(methods))


def plans_for(kwargs: Mapping[str, Any], methods: list[str]) -> dict[str, Any]:
    return compare_plans(tuple(sorted(kwargs.items())), tuple(methods))


@st.cache_data(show_spinner=False)
def catalogue_ids() -> list[str]:
    import planner

    return [m.id for m in planner.catalogue()]


@st.cache_data(show_spinner=False)
def gpu_table() -> dict[str, dict[str, Any]]:
    """gpu id -> {name, memory_bytes, usable_bytes}."""
    import planner

    return {gid: {"name": g.name, "memory_bytes": g.memory_bytes, "usable_bytes": g.usable_bytes}
            for gid, g in planner.GPUS.items()}


@st.cache_data(show_spinner=False)
def method_ids() -> list[str]:
    import planner

    return list(planner.METHODS)


def save_upload(data: bytes, name: str = "config.json") -> Path:
    """Write an uploaded file under a private temporary directory, named by its content hash (so
    the cached plan for the same upload is reused). Returns the path; the name never reaches a shell."""
    import hashlib

    digest = hashlib.sha256(data).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / f"alignplan-uploads-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    folder = root / digest
    folder.mkdir(exist_ok=True)
    path = folder / upload_name(name, "config.json")
    if not path.exists():
        path.write_bytes(data)
    return path


def upload_name(name: str, fallback: str) -> str:
    """The base name of an uploaded file, safe to join to a folder ("../x" -> "x", ".." -> fallback)."""
    base = Path(str(name).replace("\\", "/")).name
    return base if base not in ("", ".", "..") else fallback


def gib(n: int | float | None) -> str:
    """Bytes as GiB (2^30) for display: two decimals below 10 GiB, one above."""
    if n is None:
        return "–"
    value = n / GIB
    return f"{value:,.2f} GiB" if abs(value) < 10 else f"{value:,.1f} GiB"


def runs_dir() -> Path:
    """Where runs live (runners' rule: ALIGNPLAN_RUNS_DIR, else ./runs)."""
    from runners.rundir import runs_root

    return runs_root()


# --- shared sidebar ------------------------------------------------------------------------------


def seed_shared_choices(params: Mapping[str, str]) -> None:
    """On a session's first run, take the sidebar choices from the link's query parameters."""
    if st.session_state.get("_shared_seeded"):
        return
    st.session_state["_shared_seeded"] = True
    shared = {k: v for k, v in params.items() if k in SHARED_DEFAULTS}
    values, problems = inputs_from_query(shared)
    for key, value in values.items():
        st.session_state[key] = value
    st.session_state.setdefault("_link_problems", []).extend(problems)


def sidebar_choices() -> None:
    """Model, GPU type and GPU count: widgets keyed MODEL_KEY, GPU_KEY, GPUS_KEY."""
    ids = attempt("Loading the model catalogue", catalogue_ids)
    gpus = attempt("Loading the GPU table", gpu_table)
    if not (ids.ok and gpus.ok):
        return
    options = list(ids.value)
    current = st.session_state.get(MODEL_KEY, DEFAULT_MODEL)
    if current not in options:  # a hub id or path typed earlier, or from a link
        options.insert(0, current)
    st.session_state.setdefault(MODEL_KEY, DEFAULT_MODEL if DEFAULT_MODEL in options else options[0])
    st.selectbox(
        "Model", options, key=MODEL_KEY, accept_new_options=True,
        help="Search the catalogue, or type a hub id (org/name) or a local config.json path and press Enter.",
    )
    gpu_ids = list(gpus.value)
    st.session_state.setdefault(GPU_KEY, DEFAULT_GPU if DEFAULT_GPU in gpu_ids else gpu_ids[0])
    if st.session_state[GPU_KEY] not in gpu_ids:
        st.session_state[GPU_KEY] = gpu_ids[0]
    st.selectbox(
        "GPU type", gpu_ids, key=GPU_KEY,
        format_func=lambda g: f"{g}  ({gpus.value[g]['memory_bytes'] / GIB:.0f} GiB)",
    )
    st.session_state.setdefault(GPUS_KEY, 1)
    st.number_input("GPUs per node", min_value=1, max_value=MAX_GPUS_PER_NODE, step=1, key=GPUS_KEY)


def shared_choices() -> tuple[str, str, int]:
    """(model, gpu, gpus) as chosen in the sidebar."""
    return (st.session_state.get(MODEL_KEY, DEFAULT_MODEL), st.session_state.get(GPU_KEY, DEFAULT_GPU),
            int(st.session_state.get(GPUS_KEY, 1)))


# --- runs ------------------------------------------------------------------------------------------

# metrics.jsonl keys that are bookkeeping rather than curves of the method.
BASE_METRIC_KEYS = frozenset({"step", "max_steps", "epoch", "loss", "learning_rate", "tokens_per_second",
                              "peak_memory_bytes", "memory_kind", "time", "grad_norm", "num_tokens"})
# The metrics that say whether preference learning works (TRL's names), shown first when present.
KEY_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "reward", "reward_std",
               "kl", "accuracy")
STATUS_ICONS = {"prepared": ":material/schedule:", "running": ":material/directions_run:",
                "succeeded": ":material/check_circle:", "failed": ":material/error:",
                "stopped": ":material/stop_circle:"}
REFRESH_S = 2.0


def method_metric_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The method's own numeric metrics in the rows (rewards/margins, kl, ...), in first-seen order."""
    keys: dict[str, None] = {}
    for row in rows:
        for key, value in row.items():
            if key not in BASE_METRIC_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
                keys[key] = None
    return list(keys)


def key_metric_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The few method metrics worth a chart (DPO's reward accuracies and margins, GRPO's reward and
    KL...); all the method's metrics when none of those is logged."""
    found = method_metric_keys(rows)
    return [k for k in KEY_METRICS if k in found] or found


def registry():
    """The run registry under the runs root; opening it reconciles runs whose processes ended."""
    from runners.registry import Registry

    return Registry.for_runs_root()


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def render_run(run_id: str, *, key: str, capacity_bytes: int | None = None) -> str | None:
    """A run's live view: status, progress and ETA, curves, measured vs predicted memory, log tail.

    Redraws every REFRESH_S seconds while the run is alive (st.fragment), and reruns the whole page
    once when it ends so the page's buttons match the new status. Returns the status drawn."""
    import time as _time

    from alignplan import figures

    def body() -> str | None:
        from runners.rundir import RunDir

        try:
            rec = registry().get(run_id)
        except Exception as exc:
            show_error(f"Reading run {run_id}", exc)
            return None
        run = RunDir(Path(rec.run_dir))
        rows = run.metrics()
        last = rows[-1] if rows else {}
        icon = STATUS_ICONS.get(rec.status, "")
        step, max_steps = last.get("step"), last.get("max_steps")
        elapsed = None
        if rec.started_at:
            elapsed = (rec.ended_at or _time.time()) - rec.started_at
        # steps logged before this (re)start: a resumed run's rate counts only its own steps
        start_step = max((r.get("step") or 0 for r in rows if rec.started_at and (r.get("time") or 0) < rec.started_at),
                         default=0)
        fraction, eta = figures.progress_eta(step, max_steps, elapsed, start_step)
        if rec.status == "succeeded":
            fraction, eta = 1.0, 0.0
        c1, c2, c3, c4 = st.columns(4)
        c1.metric("Status", f"{rec.status}", help="From the run registry (runs/registry.db).")
        c2.metric("Step", f"{step or 0} / {max_steps or '?'}")
        c3.metric("Elapsed", fmt_duration(elapsed), help="Time since the run started.")
        c4.metric("ETA", fmt_duration(eta) if rec.status == "running" else "–")
        st.progress(fraction, text=f"{icon} {rec.status}: {fraction:.0%}")
        if rec.status == "failed" and rec.error:
            st.error("The run failed. Its last log lines are below.")
        if rows:
            left, right = st.columns(2)
            left.plotly_chart(figures.metric_curves_figure(rows, ["loss"], title="Loss"), key=f"{key}_loss")
            extra = key_metric_keys(rows)
            if extra:
                right.plotly_chart(figures.metric_curves_figure(rows, extra, title="Method metrics"),
                                   key=f"{key}_extra")
            st.markdown("**Peak memory: measured vs predicted**")
            st.plotly_chart(figures.memory_vs_prediction_figure(rows, rec.predicted_peak_bytes, capacity_bytes),
                            key=f"{key}_mem")
        else:
            st.caption("No metrics yet: the first line appears after the first logging step.")
        decision = run.decision()
        m1, m2, m3 = st.columns(3)
        m1.metric("Predicted peak", gib(rec.predicted_peak_bytes))
        m2.metric("Measured peak", gib(rec.measured_peak_bytes or last.get("peak_memory_bytes")))
        m3.metric("Setup", f"{decision.get('kind', '?')} × {decision.get('num_processes', '?')}",
                  help=str(decision["reason"]) if decision.get("reason") else None)
        held = run.parameters_held()
        if held:
            how = "its shard" if held.get("sharded") else "a full copy"
            st.caption(f"Each process held {how}: {held['this_process']:,} of {held['total']:,} parameters "
                       f"({held['this_process'] / held['total']:.0%}).")
        st.markdown("**Log (tail)**")
        st.code(run.log_tail(lines=30) or "(no output yet)", language="text")
        return rec.status

    alive = False
    try:
        alive = registry().get(run_id).status == "running"
    except Exception:
        pass
    if not alive:
        return body()

    @st.fragment(run_every=REFRESH_S)
    def live() -> None:
        status = body()
        if status != "running":
            st.rerun()  # full rerun: the page's controls follow the new status

    live()
    return "running"


def use_app_navigation() -> None:
    """Every page calls this first: make the server run app.py (navigation + sidebar) for it.

    A folder named pages/ beside app.py switches Streamlit into its older "pages directory" mode
    until app.py calls st.navigation. A first visit straight to /plan on a fresh server would then
    run pages/plan.py alone, without the sidebar. Turning that mode off and rerunning once sends
    the request through app.py, as every later one goes.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        st.rerun()


# --- launch form -----------------------------------------------------------------------------------

# TRL 1.16's defaults for the fields the Launch form shows, per recipe method. Kept here so the page
# opens without importing TRL (seconds); tests/app/test_app_ui.py checks them against TRL's classes.
_PREF = {"learning_rate": 1e-6, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
         "max_length": 1024, "beta": 0.1}
_ONLINE = {"learning_rate": 1e-6, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
           "max_completion_length": 512}
TRL_DEFAULTS: dict[str, dict[str, Any]] = {
    "sft": {"learning_rate": 2e-5, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
            "max_length": 1024},
    "rm": {"learning_rate": 1e-4, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
           "max_length": 1024},
    "dpo": dict(_PREF),
    "ipo": dict(_PREF),
    "kto": dict(_PREF),
    "orpo": dict(_PREF),
    "simpo": dict(_PREF),
    "grpo": {**_ONLINE, "beta": 0.0, "num_generations": 8},
    "rloo": {**_ONLINE, "beta": 0.05, "num_generations": 2},
}


TINY_KEEPS = frozenset({"learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
                        "lr_scheduler_type", "warmup_steps", "max_completion_length", "num_generations"})


def form_hparams(method: str, tiny: bool, preset: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values of the form's hyper-parameter fields, extra hparams for the free-form box) for a method.

    TRL's defaults; then the tiny demo model's settings when it is the model (TRL's defaults are tuned
    for billion-parameter models); then what the advisor's preset sets, except, for the tiny model,
    the settings of scale in TINY_KEEPS."""
    fields = dict(TRL_DEFAULTS.get(method, TRL_DEFAULTS["dpo"]))
    extras: dict[str, Any] = {}
    if tiny:
        from runners import tiny as tiny_model

        online = tiny_model.DEMO_ONLINE_HPARAMS if "num_generations" in fields else {}
        for key, value in {**tiny_model.DEMO_HPARAMS, **online}.items():
            if key in fields:
                fields[key] = value
            elif key in ("lr_scheduler_type", "warmup_steps"):
                extras[key] = value
    for key, value in (preset or {}).items():
        if tiny and key in TINY_KEEPS:
            continue  # a randomly initialised 2-layer model needs the demo's step size to learn at all
        if key in fields:
            fields[key] = value
        else:
            extras[key] = value
    return fields, extras


def tiny_model_dir() -> Path:
    """Where the demo model lives: ALIGNPLAN_TINY_MODEL, else <runs root>/tiny-model (runners' rule)."""
    from runners.tiny import default_tiny_model_dir

    return default_tiny_model_dir()


def ensure_tiny_model() -> Path:
    """Build the tiny demo model once, in a child process (keeps torch out of the app's process)."""
    import subprocess
    import sys

    from runners.tiny import is_built

    out = tiny_model_dir()
    if is_built(out):
        return out
    log = runs_dir() / "tiny-model-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        code = subprocess.call([sys.executable, "-m", "runners.tiny", str(out)], stdout=fh,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                               cwd=str(Path(__file__).resolve().parent.parent))
    if code != 0 or not is_built(out):
        raise RuntimeError(f"building the tiny demo model into {out} failed (exit {code}); see {log}")
    return out


@st.cache_data(show_spinner=False, max_entries=64)
def dataset_preview(path: str, stamp: tuple[float, int], method: str, rows: int = 5) -> dict[str, Any]:
    """First rows as read, and the format detected and checked for the method (runners.data).
    stamp (mtime, size) makes an edited file a new cache entry. Raises DataError for unusable data."""
    from runners import data

    dataset, fmt = data.load_and_normalize({"path": path}, method)
    raw, _, _ = data.load_rows(path)
    return {"rows": raw[:rows], "format": fmt.name, "description": fmt.description, "count": fmt.rows,
            "columns": list(dataset.column_names)}


def file_stamp(path: str) -> tuple[float, int]:
    try:
        st_ = Path(path).stat()
        return (st_.st_mtime, st_.st_size)
    except OSError:
        return (0.0, 0)


def save_dataset_upload(data: bytes, name: str) -> Path:
    """An uploaded data file goes under <runs root>/uploads/<hash>/<name>: the run reads it later,
    so it must outlive the temporary directory. Only the base name of the upload is kept."""
    import hashlib

    safe = upload_name(name, "data.jsonl")
    folder = runs_dir() / "uploads" / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    if not path.exists():
        path.write_bytes(data)
    return path


@st.cache_data(show_spinner=False, ttl=30)
def devices_found() -> Any:
    from runners import devices

    return devices.discover()


def stop_run_in_background(run_id: str) -> None:
    """Ask a run to stop without blocking the page: launch.stop waits for the checkpoint (up to a
    minute), so it runs on its own thread; the registry, which the monitor reads, shows the outcome."""
    import threading

    from runners import launch

    def stop() -> None:
        try:
            launch.stop(run_id)
        except Exception as exc:  # noqa: BLE001 - reported in the server log; the registry has the status
            print(f"alignplan: stopping {run_id} failed: {exc}")

    threading.Thread(target=stop, name=f"stop-{run_id}", daemon=True).start()


def run_page(main: Callable[[], None], what: str = "This page") -> None:
    """Run a page's main(): anything it did not catch itself becomes a short error with details
    folded away, never a traceback. (st.rerun/st.stop/st.switch_page are BaseExceptions and pass.)"""
    try:
        main()
    except Exception as exc:  # the last line of defence; pages catch the errors they expect
        show_error(what, exc)


def fixes_to_fit(request: dict[str, Any], on_gpu: bool) -> list[str]:
    """Changes that make a run fit: the advisor's planner-checked suggestions on a GPU, plain levers on a CPU."""
    if not request:
        return []
    if not on_gpu:
        return ["turn on LoRA adapters (the frozen base needs no gradients or optimizer states)",
                "lower the batch per device or the max length (activations and logits shrink with both)",
                "use a machine with a GPU (see the Plan page for which)"]
    try:
        import advisor
        import planner

        found = advisor.fixes_for(planner.PlanRequest(**{k: v for k, v in request.items() if k != "model_id"}))
    except Exception:  # the fix list is a help, never a reason to fail the page
        return []
    return [f"{s['change']}: {s['peak_bytes_per_gpu'] / 2**30:.1f} GiB per GPU" for s in found]
