"""A whole run: ``train(config)`` prepares its data (:func:`capkit.prepare.prepare`), fits it
(:func:`capkit.fit.fit`: the cross-entropy epochs, then the self-critical ones, a checkpoint after each, resumed from
the last), draws its curves and tests it (:func:`capkit.evaluation.test`); ``python -m capkit.train`` is the same from
a shell (or under torchrun). The notebook ``03_train`` calls the same steps one by one. Its settings:
:mod:`capkit.settings`; inference: :mod:`capkit.inference`.

A run is one (encoder, decoder, target) model; the decoder is any entry of the registry (:mod:`capkit.decoders`).
Run folder ``run_dir/<run_name>/``: ``config.json``, ``vocab.json``, ``detokenizer.json``,
``last.pt`` and ``best.pt`` (weights, optimiser, config and vocabulary; loaded with
``weights_only=True``), ``history.json``, ``curves.png``, ``metrics.json``, ``predictions.jsonl``.
Every file is written through :mod:`capkit.store` (a temporary file and a rename): a killed run
leaves the previous complete version, and ``train`` with the same config resumes from ``last.pt``.
Reading a finished run back (to caption images) is :mod:`capkit.runs`.

This module imports ``dist``, ``evaluation``, ``fit``, ``prepare``, ``settings`` and ``viz`` (the curves).
"""

from __future__ import annotations

import json

from capkit import dist, settings, viz
from capkit.evaluation import test
from capkit.fit import fit
from capkit.prepare import prepare
from capkit.settings import TrainConfig


def train(config: TrainConfig, progress: bool = True) -> dict:
    """prepare -> fit -> test, writing the whole run folder; returns the metrics. Under torchrun (after
    :func:`capkit.dist.init`) every rank calls it; only rank 0 writes and shows progress."""
    progress = progress and dist.is_main()
    prep = prepare(config, progress)
    model, _ = fit(prep, progress)
    if dist.is_main():
        viz.plot_history(config.path)
    return test(model, prep)


# ----------------------------------------------------------------------------- command line (and torchrun)


def main(argv=None) -> dict:
    """``python -m capkit.train [--field value ...]``, in one process or under torchrun: join torchrun's process
    group when there is one (:func:`capkit.dist.init`), then :func:`train`. Rank 0 prints the run folder and the
    test scores; returns the metrics."""
    config, progress = settings.parse_args(argv)
    dist.init(config.device)
    try:
        if dist.is_main():
            print(f"run folder: {config.path}" + (f" ({dist.world_size()} processes)" if dist.active() else ""),
                  flush=True)
        result = train(config, progress=progress)
        if dist.is_main():
            print("test:", json.dumps(result["test"], ensure_ascii=False, default=float), flush=True)
            print(f"run folder: {config.path}", flush=True)
        return result
    finally:
        dist.finish()


if __name__ == "__main__":
    main()
