"""Run folders on disk: which folders of a run directory hold a run, and a run folder's files read back as data
(what the tables, the baselines and the viewer list; loading a run's model is :mod:`capkit.runs`).

This module imports ``store`` (``project_path``, ``read_json``, ``read_jsonl``).
"""

from __future__ import annotations

from pathlib import Path

from capkit import store


def read_json(path) -> dict | None:
    """A run folder's JSON file (``config.json``, ``metrics.json``, ...), or None when it is not there."""
    path = Path(path)
    return store.read_json(path) if path.exists() else None


def read_predictions(run_path) -> list[dict]:
    """The lines of ``<run>/predictions.jsonl``."""
    return store.read_jsonl(Path(run_path) / "predictions.jsonl")


def run_folders(run_dir) -> list[Path]:
    """Folders of ``run_dir`` that hold a run: a ``config.json`` or a ``metrics.json``."""
    root = store.project_path(run_dir)
    return sorted({p.parent for pattern in ("*/config.json", "*/metrics.json") for p in root.glob(pattern)})


def list_runs(run_dir) -> list[Path]:
    """Run folders (those holding a best.pt) under ``run_dir``."""
    root = store.project_path(run_dir)
    return sorted(p.parent for p in root.glob("*/best.pt"))
