"""The run registry: one SQLite table (runs/registry.db) of every prepared run and what became of it.

Several processes write it at once (the app, CLIs, one supervisor per run), so it runs in WAL mode
with a busy timeout, each change is one short IMMEDIATE transaction, and every connection is
opened for one operation and closed. Opening the registry reconciles it with the processes that
exist: a run recorded as running whose supervisor and command are both gone ended while nobody
watched; it becomes what its result.json says, else failed with the tail of its log.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from runners import paths
from runners.rundir.reader import RunDir

STATUSES = ("prepared", "running", "succeeded", "failed", "stopped")
FINAL_STATUSES = ("succeeded", "failed", "stopped")
# Which status may follow which. A failed or stopped run can be resumed; a succeeded one is done.
TRANSITIONS: dict[str, frozenset[str]] = {
    "prepared": frozenset({"running", "failed"}),
    "running": frozenset({"succeeded", "failed", "stopped"}),
    "stopped": frozenset({"running"}),
    "failed": frozenset({"running"}),
    "succeeded": frozenset(),
}
BUSY_TIMEOUT_MS = 30_000
# A run directory without a row is registered once it is this old (see Registry.adopt_run_dirs).
ADOPT_MIN_AGE_S = 10.0
SUPERVISOR_FILE = "supervisor.json"  # written by the supervisor into the run directory (its pids, its end)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT,
    method TEXT NOT NULL,
    model TEXT NOT NULL,
    dataset TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER,
    pgid INTEGER,
    pid_started REAL,
    supervisor_pid INTEGER,
    supervisor_started REAL,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    exit_code INTEGER,
    predicted_peak_bytes INTEGER,
    measured_peak_bytes INTEGER,
    last_metrics TEXT,
    run_dir TEXT NOT NULL,
    error TEXT,
    launches INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    pipeline_id TEXT,
    device_type TEXT,
    predicted_step_seconds REAL,
    measured_step_seconds REAL,
    predicted_tokens_per_second REAL,
    measured_tokens_per_second REAL,
    predicted_generation_seconds REAL,
    measured_generation_seconds REAL,
    measured_generation_tokens_per_second REAL,
    predicted_mfu REAL,
    measured_mfu REAL,
    predicted_decode_bw_fraction REAL
)
"""


class RegistryError(ValueError):
    """A registry request that cannot be met (unknown run id, forbidden status change)."""


class TransitionError(RegistryError):
    """A status change the lifecycle does not allow."""


@dataclass
class RunRecord:
    id: str
    name: str | None
    method: str
    model: str
    dataset: str
    status: str
    pid: int | None
    pgid: int | None
    pid_started: float | None
    supervisor_pid: int | None
    supervisor_started: float | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    exit_code: int | None
    predicted_peak_bytes: int | None
    measured_peak_bytes: int | None
    last_metrics: dict[str, Any] | None
    run_dir: str
    error: str | None
    launches: int
    updated_at: float
    pipeline_id: str | None = None  # a pipeline stage: the id of its pipeline run
    # Speed (issue 14), from result.json's throughput block (runners.rundir.timing): device_type is "cpu"
    # or the planner's GPU id; step and generation seconds per logged step (medians after warm-up);
    # predicted_* at the lengths the run had, with the MFU and decode bandwidth fraction the prediction used;
    # measured_mfu is the MFU achieved.
    device_type: str | None = None
    predicted_step_seconds: float | None = None
    measured_step_seconds: float | None = None
    predicted_tokens_per_second: float | None = None
    measured_tokens_per_second: float | None = None
    predicted_generation_seconds: float | None = None
    measured_generation_seconds: float | None = None
    measured_generation_tokens_per_second: float | None = None
    predicted_mfu: float | None = None
    measured_mfu: float | None = None
    predicted_decode_bw_fraction: float | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        data = dict(row)
        data["last_metrics"] = json.loads(data["last_metrics"]) if data["last_metrics"] else None
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_path(runs_root: str | Path | None = None) -> Path:
    return paths.runs_root(runs_root) / "registry.db"


class Registry:
    """Access to runs/registry.db; ``reconcile`` runs on open unless told not to."""

    def __init__(self, path: str | Path | None = None, *, reconcile: bool = True) -> None:
        self.path = Path(path) if path is not None else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._create()
        if reconcile:
            self.reconcile()

    def _create(self) -> None:
        """WAL mode and the table. Switching a new file to WAL takes a lock that SQLite's busy
        handler does not wait for, so processes opening a fresh registry together retry here."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                with self._connect() as con:
                    if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        con.execute("PRAGMA journal_mode=WAL")
                    con.execute(_SCHEMA)
                    self._add_missing_columns(con)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02 + random.random() * 0.05)

    @classmethod
    def for_runs_root(cls, runs_root: str | Path | None = None, **kw: Any) -> Registry:
        return cls(default_path(runs_root), **kw)

    @staticmethod
    def _add_missing_columns(con: sqlite3.Connection) -> None:
        """A registry written by an older version gains the columns added since (all nullable)."""
        have = {row["name"] for row in con.execute("PRAGMA table_info(runs)")}
        for line in _SCHEMA.splitlines():
            parts = line.strip().rstrip(",").split()
            if len(parts) >= 2 and parts[1] in ("TEXT", "INTEGER", "REAL") and parts[0] not in have:
                decl = " ".join(p for p in parts[1:] if p not in ("NOT", "NULL", "PRIMARY", "KEY"))
                con.execute(f"ALTER TABLE runs ADD COLUMN {parts[0]} {decl}")

    # --- connections ------------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            yield con
        finally:
            con.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # --- reads ------------------------------------------------------------------------------------

    def get(self, run_id: str) -> RunRecord:
        with self._connect() as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RegistryError(f"run id {run_id!r}: no such run in {self.path}")
        return RunRecord.from_row(row)

    def resolve(self, ref: str) -> RunRecord:
        """A run by its id, a unique prefix or suffix of it, or its unique name."""
        ref = ref.strip()
        if not ref:  # an empty prefix would match every run
            raise RegistryError("run '': give a run id, a unique part of one, or a run name (see `alignplan runs list`)")
        with self._connect() as con:
            rows = con.execute(
                "SELECT * FROM runs WHERE id = ? OR id LIKE ? ESCAPE '\\' OR id LIKE ? ESCAPE '\\' OR name = ? "
                "ORDER BY created_at",
                (ref, f"{_like(ref)}%", f"%{_like(ref)}", ref),
            ).fetchall()
        exact = [r for r in rows if r["id"] == ref]
        if exact:
            return RunRecord.from_row(exact[0])
        if len(rows) == 1:
            return RunRecord.from_row(rows[0])
        if not rows:
            raise RegistryError(f"run {ref!r}: no run has this id, id prefix or name (see `alignplan runs list`)")
        ids = ", ".join(r["id"] for r in rows[:5])
        raise RegistryError(f"run {ref!r}: ambiguous, matches {len(rows)} runs ({ids}); give more of the id")

    def resolve_exact(self, ref: str) -> RunRecord | None:
        """A run by its full id or its unique name; None when neither matches. Deleting a run takes
        this, not resolve(): a part of an id is too easy to match the wrong run with."""
        with self._connect() as con:
            rows = con.execute("SELECT * FROM runs WHERE id = ? OR name = ? ORDER BY created_at",
                               (ref, ref)).fetchall()
        exact = [r for r in rows if r["id"] == ref]
        if exact:
            return RunRecord.from_row(exact[0])
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows[:5])
            raise RegistryError(f"run {ref!r}: {len(rows)} runs have this name ({ids}); give the id")
        return RunRecord.from_row(rows[0]) if rows else None

    def resolve_prefix(self, ref: str) -> RunRecord:
        """The one run whose id starts with ``ref`` (never a suffix); RegistryError otherwise."""
        ref = ref.strip()
        if not ref:
            raise RegistryError("run '': give a run id or a run name (see `alignplan runs list`)")
        with self._connect() as con:
            rows = con.execute("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY created_at",
                               (f"{_like(ref)}%",)).fetchall()
        if not rows:
            raise RegistryError(f"run {ref!r}: no run has this id, id prefix or name (see `alignplan runs list`)")
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows[:5])
            raise RegistryError(f"run {ref!r}: ambiguous, matches {len(rows)} runs ({ids}); give the id")
        return RunRecord.from_row(rows[0])

    def list(self, status: str | None = None) -> list[RunRecord]:
        query, args = "SELECT * FROM runs", ()
        if status is not None and status not in STATUSES:
            raise RegistryError(f"status {status!r}: not a run status; accepted: {', '.join(STATUSES)}")
        if status is not None:
            query, args = query + " WHERE status = ?", (status,)
        with self._connect() as con:
            rows = con.execute(query + " ORDER BY created_at, id", args).fetchall()
        return [RunRecord.from_row(r) for r in rows]

    # --- writes -----------------------------------------------------------------------------------

    def add(
        self,
        *,
        run_id: str,
        method: str,
        model: str,
        dataset: str,
        run_dir: str | Path,
        name: str | None = None,
        predicted_peak_bytes: int | None = None,
        pipeline_id: str | None = None,
    ) -> RunRecord:
        now = time.time()
        with self._transaction() as con:
            con.execute(
                "INSERT INTO runs (id, name, method, model, dataset, status, created_at, run_dir, "
                "predicted_peak_bytes, updated_at, pipeline_id) VALUES (?, ?, ?, ?, ?, 'prepared', ?, ?, ?, ?, ?)",
                (run_id, name, method, model, dataset, now, str(run_dir), predicted_peak_bytes, now, pipeline_id),
            )
        return self.get(run_id)

    def add_run(self, run: RunDir) -> RunRecord:
        """Register a prepared run directory (status prepared), from its spec.yaml and plan.json."""
        spec = run.spec()
        return self.add(
            run_id=run.id,
            name=spec.name,
            method=spec.method,
            model=spec.model,
            dataset=spec.dataset.path,
            run_dir=run.path,
            predicted_peak_bytes=run.plan().get("predicted_peak_bytes"),
        )

    def transition(self, run_id: str, new_status: str, *, expect: str | None = None, **fields: Any) -> RunRecord:
        """Move a run to ``new_status`` (validated), setting ``fields`` in the same transaction."""
        if new_status not in STATUSES:
            raise RegistryError(f"status {new_status!r}: accepted: {', '.join(STATUSES)}")
        with self._transaction() as con:
            row = con.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RegistryError(f"run id {run_id!r}: no such run in {self.path}")
            current = row["status"]
            if expect is not None and current != expect:
                raise TransitionError(f"run {run_id}: status is {current}, expected {expect}")
            if new_status not in TRANSITIONS[current]:
                allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (final)"
                raise TransitionError(
                    f"run {run_id}: cannot go from {current} to {new_status}; allowed from {current}: {allowed}"
                )
            self._set(con, run_id, status=new_status, **fields)
        return self.get(run_id)

    def update(self, run_id: str, **fields: Any) -> RunRecord:
        """Set fields other than status (pids, metrics, peaks)."""
        if "status" in fields:
            raise RegistryError("status: change it with transition(), which validates the lifecycle")
        with self._transaction() as con:
            self._set(con, run_id, **fields)
        return self.get(run_id)

    def delete(self, run_id: str) -> None:
        with self._transaction() as con:
            cur = con.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        if cur.rowcount == 0:
            raise RegistryError(f"run id {run_id!r}: no such run in {self.path}")

    _COLUMNS = frozenset(RunRecord.__dataclass_fields__) - {"id", "updated_at"}

    def _set(self, con: sqlite3.Connection, run_id: str, **fields: Any) -> None:
        unknown = set(fields) - self._COLUMNS
        if unknown:
            raise RegistryError(f"unknown registry fields: {', '.join(sorted(unknown))}")
        if "last_metrics" in fields and fields["last_metrics"] is not None:
            fields["last_metrics"] = json.dumps(fields["last_metrics"])
        fields["updated_at"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        cur = con.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))
        if cur.rowcount == 0:
            raise RegistryError(f"run id {run_id!r}: no such run in {self.path}")

    # --- outcome and reconciliation ---------------------------------------------------------------

    def record_outcome(self, run_id: str, exit_code: int | None) -> RunRecord:
        """Final status of a running run from its directory (result.json, STOP, exit code, log)."""
        rec = self.get(run_id)
        run = RunDir(Path(rec.run_dir))
        status, error = run.outcome(exit_code)
        fields: dict[str, Any] = {"ended_at": time.time(), "exit_code": exit_code, "error": error}
        fields.update(run.measurements())
        try:
            return self.transition(run_id, status, expect="running", **fields)
        except TransitionError:
            return self.get(run_id)  # someone else recorded it first

    def reconcile(self) -> list[str]:
        """Run directories the registry does not know (it was deleted, rebuilt or copied) are
        registered (adopt_run_dirs); runs recorded as running whose processes are gone get their
        final status, and runs someone ran by hand get theirs (see adopt_runs_done_by_hand);
        returns their ids."""
        changed = self.adopt_run_dirs()
        changed += self.adopt_runs_done_by_hand()
        for rec in self.list(status="running"):
            if is_alive(rec.supervisor_pid, rec.supervisor_started) or is_alive(rec.pid, rec.pid_started):
                continue
            if rec.supervisor_pid is None and time.time() - (rec.started_at or 0) < 5:
                continue  # being launched right now
            self.record_outcome(rec.id, rec.exit_code)
            changed.append(rec.id)
        return changed


    def adopt_run_dirs(self, min_age_s: float = ADOPT_MIN_AGE_S) -> list[str]:
        """Register the run directories under the runs root (this registry's folder) that have no
        row: a registry deleted, corrupt or rebuilt loses rows, never runs, because each run's own
        files are the truth. A run directory holds spec.yaml (or pipeline.yaml) and plan.json; its
        status is result.json's, else running when supervisor.json names a live supervisor, else
        prepared (it never ran) or failed (it ran and left no result). Directories younger than
        ``min_age_s`` are left alone: prepare() may still be writing one it will register itself."""
        root = self.path.parent
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except OSError:
            return []
        with self._connect() as con:
            known = {row["id"] for row in con.execute("SELECT id FROM runs")}
        adopted = []
        for entry in entries:
            if entry.name in known or not entry.is_dir(follow_symlinks=False):
                continue
            facts = run_dir_facts(Path(entry.path), min_age_s=min_age_s)
            if facts is None:
                continue
            try:
                self.insert_adopted(facts)
            except sqlite3.IntegrityError:  # registered meanwhile by whoever prepared it
                continue
            adopted.append(entry.name)
        return adopted

    def insert_adopted(self, facts: dict[str, Any]) -> RunRecord:
        """Insert a row from run_dir_facts() (any status; the lifecycle starts where the files say)."""
        facts = {**facts, "updated_at": time.time()}
        if facts.get("last_metrics") is not None:
            facts["last_metrics"] = json.dumps(facts["last_metrics"])
        cols = ", ".join(facts)
        marks = ", ".join("?" for _ in facts)
        with self._transaction() as con:
            con.execute(f"INSERT INTO runs ({cols}) VALUES ({marks})", tuple(facts.values()))
        return self.get(facts["id"])

    def adopt_runs_done_by_hand(self) -> list[str]:
        """`bash command.sh` bypasses the registry. A prepared, stopped or failed run whose
        result.json was written after its record last changed has run since: record that it ran
        (one more launch) and the outcome its directory shows."""
        adopted = []
        for rec in self.list():
            if rec.status not in ("prepared", "stopped", "failed"):
                continue
            run = RunDir(Path(rec.run_dir))
            result = run.result() or {}
            if result.get("status") not in FINAL_STATUSES:
                continue
            # When it was written: the recipe's own clock in result.json (a copied runs/ folder
            # keeps it; file times may not survive the copy), else the file's time.
            written = result.get("time")
            if not isinstance(written, int | float):
                try:
                    written = run.result_path.stat().st_mtime
                except OSError:
                    continue
            if written <= rec.updated_at:
                continue  # the outcome the registry already has
            times = [r["time"] for r in run.metrics() if isinstance(r.get("time"), int | float)]
            started = min((t for t in times if t > rec.updated_at), default=written)
            try:
                self.transition(rec.id, "running", expect=rec.status, started_at=started, pid=None, pgid=None,
                                supervisor_pid=None, launches=rec.launches + 1)
                self.record_outcome(rec.id, None)
            except RegistryError:  # launched through the registry, or deleted, meanwhile
                continue
            adopted.append(rec.id)
        return adopted


_MAX_FACT_FILE_BYTES = 1 << 20


def _small_file(path: Path) -> str | None:
    """The text of a regular file of at most 1 MiB, else None (never a FIFO, a device or a huge file)."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_FACT_FILE_BYTES:
            return None
        with open(path, "rb") as fh:
            return fh.read(_MAX_FACT_FILE_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return None


def _mapping(path: Path) -> dict[str, Any] | None:
    import yaml

    text = _small_file(path)
    if text is None:
        return None
    try:
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def run_dir_facts(path: Path, *, min_age_s: float = 0.0) -> dict[str, Any] | None:
    """A registry row for the run directory ``path`` read from its own files, or None when it is not
    a (finished preparing) run directory. See Registry.adopt_run_dirs."""
    plan = _mapping(path / "plan.json")
    spec = _mapping(path / "spec.yaml")
    pipeline = None if spec is not None else _mapping(path / "pipeline.yaml")
    doc = spec if spec is not None else pipeline
    if plan is None or doc is None or not isinstance(doc.get("method"), str) or not isinstance(doc.get("model"), str):
        return None
    try:
        made = os.stat(path / "plan.json").st_mtime
    except OSError:
        return None
    if time.time() - made < min_age_s:
        return None
    if spec is not None:
        data = spec.get("dataset")
        dataset = data.get("path") if isinstance(data, dict) else data
    else:
        data = pipeline.get("data") if isinstance(pipeline.get("data"), dict) else {}
        first = next(iter(data.values()), None)
        dataset = first.get("path") if isinstance(first, dict) else first
    run = RunDir(path)
    facts: dict[str, Any] = {
        "id": path.name, "name": doc.get("name") if isinstance(doc.get("name"), str) else None,
        "method": doc["method"], "model": doc["model"], "dataset": str(dataset or "-"),
        "run_dir": str(path), "created_at": made, "launches": 0,
        "predicted_peak_bytes": plan.get("predicted_peak_bytes")
        if isinstance(plan.get("predicted_peak_bytes"), int) else None,
    }
    head, dot, _stage = path.name.partition(".")
    if dot and (path.parent / head / "pipeline.yaml").is_file():
        facts["pipeline_id"] = head
    sup = _mapping(path / SUPERVISOR_FILE) or {}
    result = run.result() or {}
    ran = sup or result or run.stdout_log.exists() or run.metrics_path.exists()
    if ran:
        facts.update(run.measurements())
        facts["launches"] = max(1, int(sup.get("launches") or 1)) if isinstance(sup.get("launches"), int) else 1
        facts["started_at"] = sup.get("started_at") if isinstance(sup.get("started_at"), int | float) else None
    live = is_alive(sup.get("supervisor_pid"), sup.get("supervisor_started")) and sup.get("exit_code") is None
    if live:
        facts["status"] = "running"
        for key in ("pid", "pgid", "pid_started", "supervisor_pid", "supervisor_started"):
            facts[key] = sup.get(key)
    elif result.get("status") in FINAL_STATUSES or sup.get("exit_code") is not None:
        exit_code = sup.get("exit_code") if isinstance(sup.get("exit_code"), int) else None
        status, error = run.outcome(exit_code if sup else 0)
        facts.update(status=status, error=error, exit_code=exit_code,
                     ended_at=sup.get("ended_at") if isinstance(sup.get("ended_at"), int | float) else None)
    elif ran:
        facts.update(status="failed", error="found in the runs folder with no result (the registry was rebuilt "
                     f"and its supervisor is gone)\n--- log tail ---\n{run.log_tail()}")
    else:
        facts["status"] = "prepared"
    return facts


def is_alive(pid: int | None, started: float | None) -> bool:
    """Whether ``pid`` is a live (non-zombie) process started at ``started`` (guards pid reuse)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) > 1.0:
            return False
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def process_started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def group_members(pgid: int | None, *, include_zombies: bool = False) -> list[psutil.Process]:
    """Processes of a process group; zombies only when asked (they hold nothing but a table entry)."""
    if not pgid:
        return []
    out = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            zombie = proc.info["status"] == psutil.STATUS_ZOMBIE
            if os.getpgid(proc.pid) == pgid and (include_zombies or not zombie):
                out.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return out


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
