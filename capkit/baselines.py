"""The baselines of a run directory on disk: ``run_dir/baselines/<encoder>-<target>.json`` for every (encoder,
target) that has a run folder, each scored from the data of one of its runs (:mod:`capkit.baseline_rows`: what each
row is), kept while the data settings and the test records are the same, read back as one table.

``python -m capkit.baselines RUN_DIR [--refresh]`` writes them (``make run`` runs it beside the training runs).

This module imports ``baseline_rows``, ``folders``, ``prepare``, ``settings`` and ``store``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd

from capkit import settings, store
from capkit.baseline_rows import baselines
from capkit.folders import read_json, read_predictions, run_folders
from capkit.prepare import Prepared, prepare

# rows of load_baselines, per target
BASELINE_ORDER = ("consensus", "nearest_neighbour", "most_frequent", "random", "oracle", "oracle_trained",
                  "oracle_best")
# The layout of a baselines file; a stored file of another format is recomputed (2: the scene oracle was added;
# 3: its best guess, oracle_best; 4: the neighbours' consensus; 5: the set model told the scene, oracle_trained).
BASELINES_FORMAT = 5
# The config fields that decide a baseline's data: a stored baseline with other values is stale.
BASELINE_CONFIG_KEYS = ("dataset", "data_dir", "seed", "smoke", "smoke_records", "encoder", "encoder_weights",
                        "target", "tokenizer", "max_hashtags")


def baselines_path(run_dir, encoder: str, target: str) -> Path:
    return store.project_path(run_dir) / "baselines" / f"{encoder}-{target}.json"


def baseline_config(config: settings.TrainConfig) -> dict:
    d = config.to_dict()
    return {k: d[k] for k in BASELINE_CONFIG_KEYS}


def write_baselines(prep: Prepared, run_dir=None, split: str = "test", meteor=None) -> Path:
    """Score the baselines of ``prep`` and write ``run_dir/baselines/<encoder>-<target>.json``."""
    config = prep.config
    t0 = time.perf_counter()
    scored = baselines(prep, split, meteor=meteor)
    path = baselines_path(run_dir or config.run_dir, config.encoder, config.target)
    path.parent.mkdir(parents=True, exist_ok=True)
    store.write_json(path, {"format": BASELINES_FORMAT, "encoder": config.encoder, "target": config.target,
                            "split": split, "n": len(prep.records[split]),
                            "keys": [r.key for r in prep.records[split]], "config": baseline_config(config),
                            "seconds": time.perf_counter() - t0, "baselines": scored})
    return path


def _stale(old: dict | None, config: settings.TrainConfig, run_path: Path) -> bool:
    """Whether a stored baseline file was made from other data than the run at ``run_path``."""
    if not old or old.get("format") != BASELINES_FORMAT or old.get("config") != baseline_config(config):
        return True
    if (run_path / "predictions.jsonl").exists():
        return [x["key"] for x in read_predictions(run_path)] != old.get("keys")
    return False


def ensure_baselines(run_dir, refresh: bool = False, progress: bool = True, meteor=None) -> list[Path]:
    """Write the baselines of every (encoder, target) that has a run in ``run_dir``, unless a file
    made from the same data settings and the same test records (the keys in the run's
    predictions.jsonl) is there already; ``refresh`` recomputes it anyway.

    The data come from ``prepare`` with the config of one run of that encoder and target
    (features from the feature cache, so no encoder runs when the run's cache is there).
    ``meteor``: an open ``metrics.meteor_scorer()`` to share (starting the jar takes seconds).
    """
    done, paths = set(), []
    for p in run_folders(run_dir):
        d = read_json(p / "config.json")
        if not d:
            continue
        config = settings.TrainConfig.from_dict(d)
        cell = (config.encoder, config.target)
        if cell in done:
            continue
        done.add(cell)
        path = baselines_path(run_dir, *cell)
        if not refresh and not _stale(read_json(path), config, p):
            paths.append(path)
            continue
        t0 = time.perf_counter()
        prep = prepare(config, progress=False)
        paths.append(write_baselines(prep, run_dir, meteor=meteor))
        if progress:
            print(f"baselines {cell[0]}-{cell[1]}: {time.perf_counter() - t0:.1f} s")
    return paths


def load_baselines(run_dir) -> pd.DataFrame:
    """Every baseline of ``run_dir/baselines/*.json``, one row each, scores as ``test.<key>``.

    A baseline that does not depend on the encoder (most frequent, random) is kept once per target.
    """
    rows = []
    for path in sorted((store.project_path(run_dir) / "baselines").glob("*.json")):
        d = read_json(path)
        for name, b in d["baselines"].items():
            rows.append({"label": b["label"], "baseline": name, "encoder": d["encoder"], "target": d["target"],
                         "smoke": bool(d["config"].get("smoke")), "n": d["n"], "file": path.name,
                         "seconds": d.get("seconds"),
                         **{f"test.{k}": (math.nan if v is None else v) for k, v in b["test"].items()}})
    cols = ["label", "baseline", "encoder", "target", "smoke", "n", "file", "seconds"]
    if not rows:
        return pd.DataFrame(columns=cols)
    frame = pd.DataFrame(rows)
    frame["order"] = frame.baseline.map({name: i for i, name in enumerate(BASELINE_ORDER)}).fillna(len(BASELINE_ORDER))
    frame = frame.sort_values(["target", "order", "encoder"], kind="stable").drop(columns="order")
    return frame.drop_duplicates(["target", "label"]).reset_index(drop=True)


def main(argv=None) -> list[Path]:
    """``python -m capkit.baselines RUN_DIR [--refresh]``: :func:`ensure_baselines` from the command line
    (``make run`` scores them as the last job beside the training runs, so that ``05_results`` finds them
    written); prints each file and returns their paths."""
    parser = argparse.ArgumentParser(
        prog="python -m capkit.baselines", description="Score the baselines of every encoder x target that has a "
        "run folder in RUN_DIR (what 05_results reads from RUN_DIR/baselines/).")
    parser.add_argument("run_dir")
    parser.add_argument("--refresh", action="store_true", help="recompute files that are up to date")
    args = parser.parse_args(argv)
    paths = ensure_baselines(args.run_dir, refresh=args.refresh)
    for path in paths:
        print(path, flush=True)
    return paths


if __name__ == "__main__":
    main()
