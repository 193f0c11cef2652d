"""Where uploaded files are written: a model's config.json (private temporary directory) and data
files (under the runs root, which runs read later). Only an upload's base name is ever kept.

The temporary directory is made fresh by this process (tempfile.mkdtemp: a new random name, mode
0700, created with O_EXCL semantics), never a fixed, guessable path that someone else may have made
first or filled with symlinks; it is checked again (a directory, ours, 0700) before each use. Files are
written to a new temporary file in their folder and renamed into place, so a symlink planted where
the file goes is replaced, never followed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
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
    folder = _private_dir() / digest
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        if not _is_private_dir(folder):  # not the folder we made: drop it, it is in our own directory
            _remove(folder)
            folder.mkdir(mode=0o700)
    path = folder / upload_name(name, "config.json")
    _write_once(path, data)
    return path


_SESSION_DIRS: dict[str, Path] = {}


def _private_dir() -> Path:
    """This process's upload directory under the system temporary directory: made by mkdtemp on first
    use (and again if it was removed or changed hands since)."""
    base = tempfile.gettempdir()
    folder = _SESSION_DIRS.get(base)
    if folder is None or not _is_private_dir(folder):
        folder = Path(tempfile.mkdtemp(prefix="alignplan-uploads-", dir=base))
        _SESSION_DIRS[base] = folder
    return folder


def _is_private_dir(path: Path) -> bool:
    """A real directory (not a symlink to one), owned by this user, that nobody else can enter."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) & 0o077 == 0


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink()
    else:
        shutil.rmtree(path)


def _write_once(path: Path, data: bytes) -> None:
    """Write ``data`` at ``path`` unless a regular file with these bytes is already there; a symlink or
    anything else at ``path`` is replaced (rename), never written through."""
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode) and st.st_size == len(data) and path.read_bytes() == data:
            return
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_dataset_upload(data: bytes, name: str) -> Path:
    """An uploaded data file goes under <runs root>/uploads/<hash>/<name>: the run reads it later,
    so it must outlive the temporary directory. Only the base name of the upload is kept."""
    from runners.paths import runs_root

    safe = upload_name(name, "data.jsonl")
    folder = runs_root() / "uploads" / hashlib.sha256(data).hexdigest()[:16]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    _write_once(path, data)
    return path
