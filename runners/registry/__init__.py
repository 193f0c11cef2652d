"""The run registry: every prepared run and what became of it, and the supervisor that records it.

    store.py      Registry: one SQLite table (runs/registry.db); statuses and their transitions
    supervise.py  the process that starts a run's command, records its pid and its outcome
"""
