"""Launching runs on this machine: the checks before a run is made, and start, follow, stop,
resume and delete.

    preflight.py  checks `alignplan run` makes before anything is prepared (model, data, hparams)
    launch.py     launch/start/resume (through runners.registry.supervise), follow, wait, stop, delete
"""
