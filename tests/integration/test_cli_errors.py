"""The `alignplan` dispatcher turns file-system and registry errors into one line and exit 2."""

import subprocess
import sys


def run(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "alignplan", *argv], capture_output=True, text=True, env=env)


def test_a_folder_where_a_file_is_expected(tmp_path):
    r = run("advise", "--answers", str(tmp_path))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(tmp_path) in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_a_corrupt_registry(tmp_path):
    import os

    (tmp_path / "registry.db").write_bytes(b"this is not sqlite" * 100)
    r = run("runs", "list", env={**os.environ, "ALIGNPLAN_RUNS_DIR": str(tmp_path)})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "registry" in r.stderr and len(r.stderr.strip().splitlines()) == 1
