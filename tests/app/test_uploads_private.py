"""Uploads under the system temporary directory (issue 11): a fresh private directory per process,
never a fixed path someone else made first, and never written through a planted symlink."""

from __future__ import annotations

import os
import stat

from alignplan import uploads


def test_upload_dir_is_private_fresh_and_ignores_a_planted_symlink(tmp_path, monkeypatch):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    monkeypatch.setattr(uploads.tempfile, "gettempdir", lambda: str(tmp))
    monkeypatch.setattr(uploads, "_SESSION_DIRS", {})
    # Another user got there first: the old fixed path is a symlink to a folder they can read.
    os.symlink(victim, tmp / f"alignplan-uploads-{os.getuid()}")
    path = uploads.save_upload(b'{"model_type": "llama"}', "config.json")
    assert list(victim.iterdir()) == []  # nothing written through the planted link
    root = path.parent.parent
    assert root.parent == tmp and not root.is_symlink()
    assert stat.S_IMODE(root.stat().st_mode) == 0o700 and root.stat().st_uid == os.getuid()
    assert path.read_bytes() == b'{"model_type": "llama"}'
    # A symlink planted where the file goes (the next upload with the same bytes) is replaced, not followed.
    target = victim / "stolen.json"
    path.unlink()
    os.symlink(target, path)
    again = uploads.save_upload(b'{"model_type": "llama"}', "config.json")
    assert again == path and not path.is_symlink() and not target.exists()
    assert path.read_bytes() == b'{"model_type": "llama"}'
    # A folder that is no longer private is not reused.
    os.chmod(root, 0o755)
    other = uploads.save_upload(b'{"model_type": "qwen2"}', "config.json")
    assert other.parent.parent != root and stat.S_IMODE(other.parent.parent.stat().st_mode) == 0o700
