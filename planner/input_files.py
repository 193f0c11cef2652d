"""Reading a file a person hands us (advisor answers, a run or pipeline spec, a model's config.json,
a data set) without hanging or exhausting memory: only a regular file (never a FIFO, a device such as
/dev/zero, a directory or a symlink loop), read with a size cap, and parsed YAML/JSON nested no deeper
than MAX_DEPTH levels and holding no more than MAX_NODES values (YAML aliases can make a small file a
huge tree). Every refusal is an InputFileError (a ValueError) naming the field and the file, one line.
Pure Python, like the rest of the planner: every package reads its input files through here."""

from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

MAX_DEPTH = 64
MAX_NODES = 1_000_000
SMALL_FILE_BYTES = 4 * 2**20  # answers, specs, config.json: far below this


class InputFileError(ValueError):
    """An input file that cannot be read safely; the message names the field and the file."""


def check_regular_file(path: str | Path, field: str) -> os.stat_result:
    """os.stat of ``path`` when it is a regular file (symlinks followed, a loop refused), else InputFileError."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(f"{field}: {path}: file not found") from None
    except OSError as exc:
        why = "a symlink loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
        raise InputFileError(f"{field}: {path}: cannot be read ({why})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputFileError(f"{field}: {path}: is a directory; give a file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise InputFileError(f"{field}: {path}: {kind}, not a regular file; give a file")
    return st


def read_bytes(path: str | Path, field: str, max_bytes: int = SMALL_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (checked before and while reading)."""
    st = check_regular_file(path, field)
    if st.st_size > max_bytes:
        raise InputFileError(f"{field}: {path}: {st.st_size:,} bytes; accepted: at most {max_bytes:,} bytes")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputFileError(f"{field}: {path}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):  # swapped after the check above
            raise InputFileError(f"{field}: {path}: not a regular file; give a file")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputFileError(f"{field}: {path}: more than {max_bytes:,} bytes; accepted: at most {max_bytes:,} bytes")
    return data


def read_text(path: str | Path, field: str, max_bytes: int = SMALL_FILE_BYTES) -> str:
    data = read_bytes(path, field, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{field}: {path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                             f"{exc.start})") from None


def bracket_depth(text: str) -> int:
    """The deepest nesting of [ and { in ``text`` (quoted text skipped): a cheap bound checked before a
    parser that recurses is given the text."""
    depth = deepest = 0
    quote = ""
    escaped = False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\" and quote == '"':
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
        elif ch == "\n" and quote == "'":
            quote = ""
    return deepest


def check_shape(data: Any, field: str, source: str | Path, max_depth: int = MAX_DEPTH,
                max_nodes: int = MAX_NODES) -> Any:
    """``data`` when it nests at most ``max_depth`` levels and holds at most ``max_nodes`` values."""
    stack = [(data, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise InputFileError(f"{field}: {source}: more than {max_nodes:,} values (YAML aliases?); "
                                 "accepted: a plain document")
        if depth > max_depth:
            raise InputFileError(f"{field}: {source}: nested deeper than {max_depth} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            stack.extend((k, depth + 1) for k in item if isinstance(k, tuple))
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
    return data


def parse_json(text: str, field: str, source: str | Path, max_depth: int = MAX_DEPTH) -> Any:
    if bracket_depth(text) > max_depth:
        raise InputFileError(f"{field}: {source}: nested deeper than {max_depth} levels")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{field}: {source}: not valid JSON ({exc.msg} at line {exc.lineno}, "
                             f"column {exc.colno})") from None
    except RecursionError:
        raise InputFileError(f"{field}: {source}: nested deeper than {max_depth} levels") from None
    return check_shape(data, field, source, max_depth)


def parse_yaml(text: str, field: str, source: str | Path, max_depth: int = MAX_DEPTH) -> Any:
    import yaml

    if bracket_depth(text) > max_depth:
        raise InputFileError(f"{field}: {source}: nested deeper than {max_depth} levels")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(f"{field}: {source}: not valid YAML ({first})") from None
    except RecursionError:
        raise InputFileError(f"{field}: {source}: nested deeper than {max_depth} levels") from None
    return check_shape(data, field, source, max_depth)


def load_yaml_file(path: str | Path, field: str, max_bytes: int = SMALL_FILE_BYTES) -> Any:
    """A YAML (or JSON) document from a regular file of bounded size and nesting."""
    return parse_yaml(read_text(path, field, max_bytes), field, path)


def load_json_file(path: str | Path, field: str, max_bytes: int = SMALL_FILE_BYTES) -> Any:
    return parse_json(read_text(path, field, max_bytes), field, path)
