"""Where uploaded files are written: a model's config.json (private temporary directory) and data
files (under the runs root, which runs read later). Only an upload's base name is ever kept."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def upload_name(name: str, fallback: str) -> str:
    """The base name of an uploaded file, safe to join to a folder ("../x" -> "x", ".." -> fallback)."""
    base = Path(str(name).replace("\\", "/")).name
    return base if base not in ("", ".", "..") else fallback


def save_upload(data: bytes, name: str = "config.json") -> Path:
    """Write an uploaded file under a private temporary directory, named by its content hash (so
    the cached plan for the same upload is reused). Returns the path; the name never reaches a shell."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    root = Path(tempfile.gettempdir()) / f"alignplan-uploads-{os.getuid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    folder = root / digest
    folder.mkdir(exist_ok=True)
    path = folder / upload_name(name, "config.json")
    if not path.exists():
        path.write_bytes(data)
    return path


def save_dataset_upload(data: bytes, name: str) -> Path:
    """An uploaded data file goes under <runs root>/uploads/<hash>/<name>: the run reads it later,
    so it must outlive the temporary directory. Only the base name of the upload is kept."""
    from runners.paths import runs_root

    safe = upload_name(name, "data.jsonl")
    folder = runs_root() / "uploads" / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    if not path.exists():
        path.write_bytes(data)
    return path
