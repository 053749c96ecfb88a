"""Ablations: train one text run per setting and read scores and attention grounding side by side.

``ablate(base, grid)`` trains (or resumes, or reuses: run folders follow the usual resume rules) one run per
combination of the settings in ``grid`` on top of the ``base`` config, each in ``<base.run_dir>/<name>`` with a
name built from the settings, and returns one row per run: the validation score that selects epochs (CIDEr-D), the
test scores (CIDEr-D, BLEU-4, the study's BLEU-1), epochs to the best validation score, training seconds, and,
where the records carry object boxes (the embedded dataset), the pointing game on the validation and test images.

``choose(table, by)`` picks the row a researcher would pick on validation only.

This module sits at the end of the flow, with the notebooks: it imports ``evaluation``, ``fit``, ``pointing``,
``prepare``, ``runs`` and ``viz``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import TYPE_CHECKING

import pandas as pd

from capkit import runs, viz
from capkit.evaluation import test
from capkit.fit import fit
from capkit.pointing import grounding
from capkit.prepare import prepare

if TYPE_CHECKING:  # annotations only
    from capkit.settings import TrainConfig


def run_name(settings: dict) -> str:
    """``efficientnet_lite0-soft-lambda_att1``: encoder and decoder first, then the other settings."""
    parts = [str(settings[k]) for k in ("encoder", "decoder") if k in settings]
    parts += [f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in settings.items()
              if k not in ("encoder", "decoder")]
    return "-".join(parts).replace("/", "_")


def combinations(grid: dict) -> list[dict]:
    """Every combination of ``{setting: [values]}``, in the order the values are given."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def pointing(run, records, object_words: dict, cache_dir, beam_size: int = 3) -> dict | None:
    """The pointing game of a text run on ``records`` (None when they carry no boxes)."""
    if not any(r.boxes for r in records):
        return None
    summary, _ = grounding(run, records, object_words, beam_size=beam_size, cache_dir=cache_dir)
    return summary


def ablate(base: TrainConfig, grid: dict, object_words: dict | None = None, progress: bool = True) -> pd.DataFrame:
    """Train one run per combination of ``grid`` over ``base`` and return their rows (see the module notes).

    The pointing game of each run is stored in its ``metrics.json`` (``pointing``, with the test fingerprint of
    the weights it was measured on), so a rerun of a finished ablation decodes nothing again."""
    import matplotlib.pyplot as plt

    rows = []
    for settings in combinations(grid):
        config = dataclasses.replace(base, **settings, run_name=run_name(settings))
        if progress:
            print(f"== {config.run_name}")
        prep = prepare(config, progress=False)
        model, _ = fit(prep, progress=False)
        plt.close(viz.plot_history(config.path))
        metrics = test(model, prep)
        history = json.loads((config.path / "history.json").read_text())
        best = next(r for r in history if r["epoch"] == metrics["best_epoch"])
        row = {**settings, "run": config.run_name, "val CIDEr-D": best.get("val_cider"),
               "test CIDEr-D": metrics["test"].get("CIDEr-D"), "test BLEU-4": metrics["test"].get("BLEU-4"),
               "test BLEU-1 (study)": metrics["test"].get("study_bleu1"), "best epoch": metrics["best_epoch"],
               "epochs run": metrics["epochs_run"], "train seconds": round(metrics["train_seconds"], 1)}
        if object_words:
            stored = metrics.get("pointing") or {}
            if stored.get("fingerprint") != metrics["fingerprint"]:
                run = runs.load_run(config.path)
                stored = {"fingerprint": metrics["fingerprint"],
                          **{split: pointing(run, prep.records[split], object_words, config.cache_dir,
                                             config.beam_size) for split in ("val", "test")}}
                run.update_metrics(pointing=stored)
            for split in ("val", "test"):
                game = stored.get(split)
                if game:
                    row[f"{split} pointing"] = game["accuracy"]
                    row[f"{split} chance"] = game["chance"]
                    row[f"{split} pointing / chance"] = game["accuracy"] / game["chance"] if game["chance"] else None
        rows.append(row)
    return pd.DataFrame(rows)


def choose(table: pd.DataFrame, by: str = "val CIDEr-D", within: list[str] | None = None,
           tolerance: float = 0.0, then: str | None = None) -> pd.DataFrame:
    """The row a researcher picks on validation only, per group of ``within`` settings (all rows: one).

    Plain (``tolerance`` 0): the highest ``by``. With ``tolerance`` and ``then``: of the rows whose ``by`` lies
    within ``tolerance`` (a share, e.g. 0.03) of the group's best, the one with the highest ``then`` (e.g. the
    validation pointing game): differences smaller than the score's noise do not decide, what else the setting
    buys does. Rows without ``then`` fall back to ``by``."""
    groups = table.groupby(within) if within else [((), table)]
    picked = []
    for _, rows in groups:
        best = rows[by].max()
        near = rows[rows[by] >= best * (1 - tolerance)] if tolerance else rows.loc[[rows[by].idxmax()]]
        if then and then in near and near[then].notna().any():
            picked.append(near[then].idxmax())
        else:
            picked.append(near[by].idxmax())
    return table.loc[picked]


def choose_shared(table: pd.DataFrame, setting: str = "lambda_att", by: str = "val CIDEr-D",
                  tolerance: float = 0.0, then: str | None = None) -> tuple[object, pd.DataFrame]:
    """One value of ``setting`` for every encoder and decoder (what ``make run`` uses), on validation only: the
    settings' mean ``by`` (and mean ``then``) over the other settings' combinations, chosen by :func:`choose`.
    Returns the value and the table of means."""
    cols = [by] + ([then] if then and then in table else [])
    means = table.groupby(setting)[cols].mean().reset_index()
    row = choose(means, by, tolerance=tolerance, then=then if then in means else None)
    return row[setting].iloc[0], means
