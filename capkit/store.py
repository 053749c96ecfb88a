"""Files: every file capkit writes appears whole or not at all; every file it reads back names itself when bad.

A writer writes a temporary file in the destination's folder (a name of its own:
``.<name>.tmp<pid>.<random>``, so two processes, or two threads, never share one) and renames it over the
destination (``os.replace``, atomic on one file system): a killed process leaves the previous complete version
and at most a stray temporary file, and a reader never sees half a file.

- :func:`open_atomic`: a file object to write into (a download, a stream of lines); the rename happens when the
  ``with`` block ends without an error, otherwise the temporary file is removed.
- :func:`write_text_atomic` (UTF-8), :func:`copy_atomic`, :func:`publish` (rename a finished ``*.partial`` file
  into place).
- :func:`write_json` (standard JSON: NaN / inf -> null, indent 1, a final newline), :func:`update_json`,
  :func:`write_jsonl` (one compact line per object).
- :func:`save_checkpoint` (``torch.save``, fsynced before the rename) and :func:`load_checkpoint` (``weights_only``:
  tensors and plain containers, never code; :class:`CheckpointError` otherwise).
- Reading back: :func:`decode_text` (UTF-8 or UTF-16, with or without a BOM), :func:`read_json` and
  :func:`read_jsonl` (a parse error is a :class:`DataError` naming the file and line); :func:`project_path` (a
  relative path inside the repository means the repository root's, from ``notebooks/`` too).

This module imports no other capkit module (torch only to save or load a checkpoint).
"""

from __future__ import annotations

import json
import math
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

CKPT_FORMAT = "capkit-checkpoint-1"
ROOT = Path(__file__).resolve().parent.parent  # the repository (capkit/..)


class CheckpointError(RuntimeError):
    """A checkpoint that is not a plain capkit checkpoint (e.g. holds pickled objects) or is damaged."""


def temp_path(path) -> Path:
    """A temporary file's name beside ``path``, unique to this process and call."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{os.getpid()}.{secrets.token_hex(4)}")


@contextmanager
def open_atomic(path, mode: str = "w", encoding: str | None = "utf-8", fsync: bool = False):
    """``with open_atomic(path, "wb") as f: ...``: write a temporary file beside ``path``, then rename it over
    ``path`` (after an fsync when asked). On an error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = temp_path(path)
    f = open(tmp, mode, encoding=None if "b" in mode else encoding)
    try:
        with f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path, text: str, fsync: bool = False) -> None:
    """``text`` in UTF-8."""
    with open_atomic(path, "w", fsync=fsync) as f:
        f.write(text)


def copy_atomic(src, dst) -> None:
    """Copy the file ``src`` to ``dst`` through a temporary file beside ``dst``."""
    dst = Path(dst)
    tmp = temp_path(dst)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def publish(src, dst) -> None:
    """Rename a file written in place under another name (e.g. a finished ``*.partial`` array) over ``dst``."""
    os.replace(src, dst)


# ----------------------------------------------------------------------------- JSON


def finite(obj):
    """NaN / inf -> None, recursively, so the JSON we write is standard JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def write_json(path, obj) -> None:
    """``obj`` as standard JSON (NaN / inf -> null; numpy scalars as floats), UTF-8, indent 1, a final newline;
    the folder is created when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(finite(obj), ensure_ascii=False, indent=1, default=float) + "\n")


def update_json(path, items: dict) -> dict:
    """Set top-level keys of a JSON file, keeping the others (read, merge, atomic write); returns the result."""
    path = Path(path)
    current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    current.update(items)
    write_json(path, current)
    return current


def write_jsonl(path, rows) -> None:
    """One compact JSON line (UTF-8, not ASCII-escaped) per object of ``rows``."""
    with open_atomic(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(obj, path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    import torch

    with open_atomic(path, "wb", fsync=True) as f:
        torch.save(obj, f)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain containers only, never code; a file that is
    not a :data:`CKPT_FORMAT` checkpoint raises :class:`CheckpointError`."""
    import torch

    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: refused or unreadable checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        raise CheckpointError(f"{path}: not a {CKPT_FORMAT} file")
    return ckpt


# ----------------------------------------------------------------------------- reading back, paths


class DataError(ValueError):
    """A data file is structurally wrong; the message names the file and the record."""


def project_path(path) -> Path:
    """Resolve a path; a relative one from anywhere inside this repository means the repository root's.

    Notebooks run with ``notebooks/`` as working directory in JupyterLab and with the repository root
    under ``make`` and papermill; ``runs/default`` must name the same folder in both (and JupyterLab
    must never start a second ``notebooks/runs/``). Outside the repository (capkit used as a library
    from another folder) relative paths keep their usual meaning.
    """
    p = Path(path).expanduser()
    if p.is_absolute():
        return p.resolve()
    cwd = Path.cwd().resolve()
    if (ROOT / "pyproject.toml").exists() and (cwd == ROOT or ROOT in cwd.parents):
        return (ROOT / p).resolve()
    return (cwd / p).resolve()


def decode_text(raw: bytes, name="<bytes>") -> str:
    """Decode UTF-8 (with or without BOM) or UTF-16 LE/BE (with or without BOM)."""
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    head = raw[:200]
    if len(head) >= 4 and head[1::2].count(0) > len(head) // 4:  # ASCII-range chars, high byte 0
        return raw.decode("utf-16-le")
    if len(head) >= 4 and head[0::2].count(0) > len(head) // 4:
        return raw.decode("utf-16-be")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{name}: not UTF-8 or UTF-16 text ({e})") from None


def read_json(path):
    """Read a JSON file in any of the encodings above; a parse error names the file and line."""
    path = Path(path)
    text = decode_text(path.read_bytes(), path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None


def read_jsonl(path) -> list:
    """Read JSON Lines; a bad line names the file and the line number."""
    path = Path(path)
    rows = []
    for n, line in enumerate(decode_text(path.read_bytes(), path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: record at line {n} is not valid JSON: {e.msg}") from None
        if not isinstance(rows[-1], dict):
            raise DataError(f"{path}: record at line {n} is not a JSON object")
    return rows
